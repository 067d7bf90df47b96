"""The `covidet` command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from covidet.cli import main
from covidet.phantom import make_phantom, write_dicom_series


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "covidet.cli", *args], capture_output=True, text=True)


def test_help_lists_the_commands() -> None:
    run = _run("--help")
    assert run.returncode == 0
    for cmd in (
        "serve",
        "diagnose",
        "demo",
        "phantom",
        "export",
        "train-demo",
        "evaluate-demo",
        "init-checkpoints",
    ):
        assert cmd in run.stdout


@pytest.mark.parametrize(
    ("command", "extra"), [("evaluate", "evaluate"), ("diagnose", "client"), ("soak", "server")]
)
def test_a_missing_dependency_names_the_extra_that_brings_it(
    monkeypatch: pytest.MonkeyPatch, command: str, extra: str
) -> None:
    import importlib
    import importlib.metadata

    from covidet.cli import _main
    from covidet.errors import CovidetError

    # every extra a message names is one the package provides
    provided = set(importlib.metadata.metadata("covidet").get_all("Provides-Extra") or [])
    assert set(_main._EXTRAS.values()) | {"server"} <= provided

    def missing(name: str) -> None:
        raise ModuleNotFoundError(f"No module named {name!r}", name="sklearn")

    monkeypatch.setattr(importlib, "import_module", missing)
    with pytest.raises(CovidetError, match=rf"sklearn is missing.*pip install 'covidet\[{extra}\]'"):
        _main._load(command)


def test_phantom_command_writes_dicom(tmp_path: Path) -> None:
    assert main(["phantom", "--kind", "CAP", "--slices", "3", "--size", "32", "--out", str(tmp_path)]) == 0
    assert len(list((tmp_path / "CAP" / "dicom").glob("*.dcm"))) == 3


def test_unreachable_server_is_a_clean_error(tmp_path: Path) -> None:
    write_dicom_series(make_phantom("CAP", n_slices=2, size=32), tmp_path)
    run = _run("diagnose", str(tmp_path), "--url", "127.0.0.1:9", "--json")
    assert run.returncode == 2
    assert "cannot reach" in run.stderr or "retry" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_gapped_series_is_refused_before_sending_with_defects_raise(tmp_path: Path) -> None:
    files = write_dicom_series(make_phantom("CAP", n_slices=8, size=32), tmp_path)
    files[3].unlink()
    # refused while reading, before any request: the unreachable server is never asked
    run = _run("diagnose", str(tmp_path), "--url", "127.0.0.1:9", "--defects", "raise", "--json")
    assert run.returncode == 2 and "gap" in run.stderr and "Traceback" not in run.stderr
    assert "cannot reach" not in run.stderr


@pytest.mark.e2e
def test_diagnose_json_and_table(covidet_server: Any, tmp_path: Path) -> None:
    write_dicom_series(make_phantom("COVID-19", n_slices=40, size=128, seed=70_000), tmp_path / "a")
    run = _run("diagnose", str(tmp_path / "a"), "--url", covidet_server.grpc_url, "--json")
    assert run.returncode == 0, run.stderr
    (result,) = json.loads(run.stdout)
    assert result["n_slices"] == 40 and set(result["class_probs"]) >= {"COVID-19"}
    table = _run("diagnose", str(tmp_path / "a"), "--url", covidet_server.http_url, "--protocol", "http")
    assert table.returncode == 0 and "stepwise P(COVID-19)" in table.stdout
    assert "train-svm" not in table.stdout  # no clinical data sent: the SVM did not answer
    # the same series as an explicit list of files (relative to the list), in reverse order
    listing = tmp_path / "series.txt"
    listing.write_text("\n".join(f"a/{f.name}" for f in sorted((tmp_path / "a").glob("*.dcm"))[::-1]))
    listed = _run("diagnose", "--files-from", str(listing), "--url", covidet_server.grpc_url, "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)[0]["class_probs"] == pytest.approx(result["class_probs"], abs=1e-6)


@pytest.mark.e2e
def test_diagnose_concurrently_keeps_the_order_and_the_answers(covidet_server: Any, tmp_path: Path) -> None:
    from covidet.phantom import write_nifti

    paths = []
    for i, kind in enumerate(("COVID-19", "non-pneumonia", "CAP")):
        ph = make_phantom(kind, n_slices=24 + 8 * i, size=128, seed=70_100 + i)
        paths.append(str(write_nifti(ph.hu, tmp_path / f"{i}.nii.gz", ph.spacing)))
    url = ("--url", covidet_server.grpc_url)
    one = _run("diagnose", *paths, *url, "--json")
    three = _run("diagnose", *paths, *url, "--json", "--concurrency", "3")
    assert one.returncode == 0 and three.returncode == 0, one.stderr + three.stderr
    a, b = json.loads(one.stdout), json.loads(three.stdout)
    assert [r["n_slices"] for r in b] == [24, 32, 40]  # in the order given, whatever finished first
    for x, y in zip(a, b, strict=True):
        assert y["class_probs"] == pytest.approx(x["class_probs"], abs=1e-6)
    bad = _run("diagnose", paths[0], *url, "--concurrency", "0")
    assert bad.returncode == 2 and "--concurrency must be >= 1" in bad.stderr


def test_diagnose_needs_a_scan_and_names_a_missing_listed_file(tmp_path: Path) -> None:
    assert _run("diagnose").returncode == 2
    listing = tmp_path / "series.txt"
    listing.write_text("missing_1.dcm\n")
    run = _run("diagnose", "--files-from", str(listing), "--url", "127.0.0.1:9")
    assert run.returncode == 2 and "do not exist" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.e2e
def test_diagnose_out_writes_seg_sr_json_png(covidet_server: Any, tmp_path: Path) -> None:
    import highdicom as hd

    write_dicom_series(make_phantom("CAP", n_slices=40, size=128, seed=70_001), tmp_path / "scan")
    run = _run(
        "diagnose", str(tmp_path / "scan"), "--url", covidet_server.grpc_url, "--out", str(tmp_path / "out")
    )
    assert run.returncode == 0, run.stderr
    out = tmp_path / "out" / "scan"
    assert {"seg.dcm", "sr.dcm", "result.json", "coronal.png"} <= {p.name for p in out.iterdir()}
    assert len(list(out.glob("keyimage_*.png"))) == 3
    seg = hd.seg.segread(out / "seg.dcm")
    assert seg.number_of_segments == 2


@pytest.mark.e2e
def test_monitor_forecasts_a_course(covidet_server: Any, tmp_path: Path) -> None:
    from covidet.phantom import write_nifti

    scans = []
    for i, seed in enumerate((80_001, 80_002)):
        ph = make_phantom("COVID-19", n_slices=40, size=128, seed=seed)
        scans.append(str(write_nifti(ph.hu, tmp_path / f"scan{i}.nii.gz", ph.spacing)))
    (tmp_path / "history.csv").write_text("day,ratio\n0,0.02\n3,0.08\n")
    run = _run(
        "monitor",
        *scans,
        "--days",
        "6,9",
        "--history",
        str(tmp_path / "history.csv"),
        "--url",
        covidet_server.grpc_url,
        "--out",
        str(tmp_path / "m"),
        "--json",
    )
    assert run.returncode == 0, run.stderr
    course = json.loads(run.stdout)
    assert [o["day"] for o in course["observed"]] == [0, 3, 6, 9]
    assert len(course["forecast"]) == 120 and course["forecast"][-1]["day"] >= 23 - 1e-6
    # every predicted crossing lies on the plotted forecast, with its band's far edge
    crossed = [d for d in course["crossing_days"].values() if d is not None]
    late = [r["latest"] for r in course["crossing_ranges"].values() if r["latest"] is not None]
    end = course["forecast"][-1]["day"]
    assert all(day <= end for day in crossed + late), (crossed, late, end)
    assert all(0 <= f["low"] <= f["mean"] + 1e-6 <= f["high"] + 2e-6 for f in course["forecast"])
    assert (tmp_path / "m" / "course.png").stat().st_size > 5000


def test_monitor_needs_one_day_per_scan(tmp_path: Path) -> None:
    run = _run("monitor", "a", "b", "--days", "1")
    assert run.returncode == 2 and "one day per scan" in run.stderr


def test_export_int8_calibrates_on_given_scans(tmp_path: Path) -> None:
    scans = []
    for i, kind in enumerate(("COVID-19", "CAP")):
        folder = tmp_path / kind
        write_dicom_series(make_phantom(kind, n_slices=6 + i, size=128, seed=900 + i), folder)
        scans.append(str(folder))
    out = tmp_path / "repo"
    assert main(["export", "--profile", "cpu-int8", "--out", str(out), "--calibration", *scans]) == 0
    record = json.loads((out / "lesion_seg" / "1" / "quantization.json").read_text())
    assert (record["check"]["n_calibration"], record["check"]["n_check"]) == (6, 7)  # scan 1 / scan 2
    run = _run("export", "--profile", "cpu", "--out", str(out), "--calibration", *scans)
    assert run.returncode == 2 and "--calibration is for --profile cpu-int8" in run.stderr


def test_the_table_names_the_clinical_svm_only_when_it_answered() -> None:
    import dataclasses

    from rich.console import Console

    from covidet import _contract as C
    from covidet.cli._diagnose import _table
    from covidet.client import Diagnosis

    svm = {"provenance": "demo: trained by covidet train-svm"}
    base = Diagnosis(
        p_viral=0.9,
        p_covid_given_viral=0.8,
        p_covid_stepwise=0.72,
        class_probs=dict.fromkeys(C.CLASS_NAMES, 0.25),
        topk_slices=(1, 2, 3),
        lung_volume_ml=4000.0,
        lesion_volume_ml=40.0,
        lesion_ratio=0.01,
        n_slices_used=30,
        provenance={"lung_seg": {"provenance": "phantoms"}, C.CLINICAL_SVM.name: svm},
        lung_mask=None,
        lesion_mask=None,
        p_svm=None,
        p_covid_fused=0.8,
        quality=(),
        attention=None,
        explanation=None,
        slice_scores=(),
        latency_s=0.1,
        source="x",
        n_slices=30,
    )

    def text(d: Diagnosis) -> str:
        console = Console(width=200, record=True)
        console.print(_table(d))
        return console.export_text()

    assert "train-svm" not in text(base) and "phantoms" in text(base)
    assert "train-svm" in text(dataclasses.replace(base, p_svm=0.7))
