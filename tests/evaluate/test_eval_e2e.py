"""`covidet evaluate` through a real Triton server on a small phantom cohort: the report, the
JSON and the CSV; a scan the server refuses is counted; an interrupted run resumes."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from covidet import _contract as C
from covidet.cli import main
from covidet.evaluate import read_results
from covidet.evaluate._results import RESULTS_NAME
from covidet.phantom import write_cohort

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def run(covidet_server: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any]:
    cohort = tmp_path_factory.mktemp("cohort")
    manifest = write_cohort(8, cohort, n_slices=24, size=128, seed=4242, courses=1)
    # a scan with no lung in it (the empty reference lesion mask of the non-pneumonia scan)
    with open(manifest) as f:
        width = len(next(csv.reader(f)))
    with open(manifest, "a") as f:
        f.write("empty,scan0000/lesion.nii.gz,non-pneumonia" + "," * (width - 3) + "\n")
    out = tmp_path_factory.mktemp("evaluation")
    args = ["evaluate", str(manifest), "--url", covidet_server.grpc_url, "--out", str(out)]
    assert main([*args, "--concurrency", "2", "--bootstrap", "200"]) == 0
    return manifest, out, covidet_server


def test_the_report_the_json_and_the_csv(run: tuple[Path, Path, Any]) -> None:
    _, out, _ = run
    m = json.loads((out / "metrics.json").read_text())
    assert m["counts"]["scans"] == 14 and m["counts"]["diagnosed"] == 13
    assert m["operating_point"]["rule"] == "argmax"
    for name in C.CLASS_NAMES:
        auc = m["per_class"][name]["auc"]
        assert 0.0 <= auc["ci_low"] <= auc["value"] <= auc["ci_high"] <= 1.0
    assert "macro_auc_ovr" in m["multiclass"]
    assert "DL#1 viral pneumonia vs not" in m["steps"]
    assert any(k.startswith("DL#3") for k in m["steps"])  # the viral scans have clinical data
    assert m["segmentation"]["lung"]["dice"]["value"] > 0.8  # the demo lung U-Net on phantoms
    assert m["course"]["patients"] == 1 and m["course"]["checks"] == 2
    assert m["quality"]["codes"]["DEMO_MODELS"]["scans"] == 13
    assert m["provenance"]["models"]
    html = (out / "report.html").read_text()
    assert "demo" in html.lower() and html.count("data:image/png;base64,") >= 8
    with open(out / "per_scan.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 14 and sum(r["status"] == "ok" for r in rows) == 13


def test_a_scan_the_server_refuses_is_counted(run: tuple[Path, Path, Any]) -> None:
    _, out, _ = run
    m = json.loads((out / "metrics.json").read_text())
    assert m["counts"]["failed"] == 1
    [fail] = m["failures"]["scans"]
    assert fail["scan_id"] == "empty" and fail["code"]


def test_an_interrupted_run_resumes(run: tuple[Path, Path, Any]) -> None:
    manifest, out, server = run
    results = out / RESULTS_NAME
    lines = results.read_text().splitlines(keepends=True)
    scan_lines = [ln for ln in lines if '"kind": "scan"' in ln]
    lost = [json.loads(ln)["scan_id"] for ln in scan_lines[-3:]]
    # as if killed before the last three scans were written, in the middle of the third-last
    kept = [ln for ln in lines if ln not in scan_lines[-3:] and '"kind": "course"' not in ln]
    results.write_text("".join(kept) + scan_lines[-3][:40])
    assert (
        main(["evaluate", str(manifest), "--url", server.grpc_url, "--out", str(out), "--bootstrap", "50"])
        == 0
    )
    recs = read_results(results)
    scans = [r for r in recs if r["kind"] == "scan"]
    assert len(scans) == 14 and sorted(r["scan_id"] for r in scans[-3:]) == sorted(lost)
    assert sum(1 for ln in results.read_text().splitlines() if '"kind": "scan"' in ln) == 14  # none twice
    assert any(r["kind"] == "course" for r in recs)
