"""The evaluation run with a stand-in server: resume after a kill, failed scans counted, the
report from the results alone, the phantom cohort's manifest read back."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from covidet import _contract as C
from covidet.client import Diagnosis, load_volume
from covidet.errors import NoLungFoundError, ServerUnavailableError
from covidet.evaluate import (
    ManifestError,
    ResultsLog,
    compute_metrics,
    evaluate,
    read_manifest,
    read_results,
    write_report,
)
from covidet.evaluate._results import RESULTS_NAME
from covidet.phantom import write_cohort


class Killed(BaseException):
    """What a kill looks like to the run: not an error it may record."""


class FakeServer:
    """Answers from the manifest's truth: the right class with probability ``p_right`` (and the
    reference masks), fails the scans in ``fail`` with NO_LUNG, dies after ``die_after`` scans."""

    def __init__(self, truth: dict[str, str], *, fail: set[str] = frozenset(), die_after: int | None = None):
        self.truth = truth
        self.fail = set(fail)
        self.die_after = die_after
        self.seen: list[str] = []
        self.forecasts = 0

    async def diagnose(self, source: Any, *, return_masks: bool = False, clinical: Any = None) -> Diagnosis:
        await asyncio.sleep(0)
        scan = Path(source.source).parent.name
        if self.die_after is not None and len(self.seen) >= self.die_after:
            raise Killed
        self.seen.append(scan)
        if scan in self.fail:
            err = NoLungFoundError("no lung found in this scan")
            err.code = "NO_LUNG"
            raise err
        label = self.truth[scan]
        probs = {n: (0.7 if n == label else 0.1) for n in C.CLASS_NAMES}
        base = Path(source.source).parent
        lung = load_volume(base / "lung.nii.gz").hu.astype(np.uint8) if return_masks else None
        lesion = load_volume(base / "lesion.nii.gz").hu.astype(np.uint8) if return_masks else None
        voxel_ml = float(np.prod(source.spacing)) / 1000
        viral = label in ("influenza", "COVID-19")
        return Diagnosis(
            p_viral=0.8 if viral else 0.2,
            p_covid_given_viral=0.9 if label == "COVID-19" else 0.3,
            p_covid_stepwise=0.72 if label == "COVID-19" else 0.1,
            class_probs=probs,
            topk_slices=(0, 1, 2),
            lung_volume_ml=float(lung.sum()) * voxel_ml if lung is not None else 1000.0,
            lesion_volume_ml=float(lesion.sum()) * voxel_ml if lesion is not None else 10.0,
            lesion_ratio=float(lesion.sum() / max(lung.sum(), 1)) if lesion is not None else 0.01,
            n_slices_used=8,
            provenance={"lung_seg": {"version": "1", "provenance": "stand-in"}},
            quality=(C.QualityFlag("DEMO_MODELS", "warning", "stand-in"),),
            p_svm=0.5 if clinical is not None else None,
            p_covid_fused=(0.85 if label == "COVID-19" else 0.2) if clinical is not None else None,
            lung_mask=lung,
            lesion_mask=lesion,
            source=str(source.source),
            n_slices=source.n_slices,
        )

    async def forecast(self, days: Any, ratios: Any, query_days: Any = None, *, levels: Any = ()) -> Any:
        """What the run reads of a `covidet.client.Forecast`: each level reached 2 days after the
        last fitted scan, within 1-6 days after it, the mean 0.01 everywhere."""
        self.forecasts += 1
        q = np.asarray(query_days, np.float64)
        last = float(days[-1])
        crossing = {float(v): last + 2.0 for v in levels}
        ranges = {float(v): (last + 1.0, last + 6.0) for v in levels}
        reach = {float(v): 0.99 for v in levels}
        return SimpleNamespace(
            query_days=q,
            mean=np.full(q.size, 0.01),
            crossing_days=crossing,
            crossing_ranges=ranges,
            reach_probability=reach,
        )


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cohort")
    return write_cohort(8, out, n_slices=8, size=48, seed=11, courses=1)


def _truth(manifest: Path) -> dict[str, str]:
    return {r.scan_id: r.label_name for r in read_manifest(manifest)}


def test_the_cohort_manifest_reads_back(cohort: Path) -> None:
    rows = read_manifest(cohort)
    assert len(rows) == 8 + 5
    assert [r.label_name for r in rows[:4]] == list(C.CLASS_NAMES)
    assert all(r.path.is_dir() and r.lung_mask and r.lung_mask.is_file() for r in rows)
    assert [r.day for r in rows[8:]] == [0.0, 3.0, 6.0, 10.0, 14.0]
    assert {r.patient_id for r in rows[8:]} == {"C000"}
    viral = [r for r in rows[:8] if r.label_name in ("influenza", "COVID-19")]
    assert viral and all(r.clinical is not None for r in viral)


def test_manifest_errors_name_the_line(tmp_path: Path) -> None:
    m = tmp_path / "m.csv"
    m.write_text("path,label\na,COVID-19\nb,pneumonia\n")
    with pytest.raises(ManifestError, match=r"line 3.*pneumonia"):
        read_manifest(m)
    m.write_text("scan,label\n")
    with pytest.raises(ManifestError, match="lacks path"):
        read_manifest(m)


def test_resume_after_a_kill_loses_nothing_and_repeats_nothing(cohort: Path, tmp_path: Path) -> None:
    rows = read_manifest(cohort)
    server = FakeServer(_truth(cohort), die_after=5)
    with pytest.raises(Killed):
        asyncio.run(evaluate(rows, server, tmp_path, concurrency=2))
    first = [r["scan_id"] for r in read_results(tmp_path / RESULTS_NAME)]
    # what finished before the kill is there, once; a scan in flight at the kill is not
    assert 4 <= len(first) <= 5 and len(set(first)) == len(first) and set(first) <= set(server.seen)
    # the kill also caught a record half-written
    with open(tmp_path / RESULTS_NAME, "a") as f:
        f.write('{"kind": "scan", "key": "scan0007", "scan_')
    again = FakeServer(_truth(cohort))
    summary = asyncio.run(evaluate(rows, again, tmp_path, concurrency=3))
    assert summary.skipped == len(first) and summary.done == len(rows) - len(first) and summary.failed == 0
    assert sorted(again.seen) == sorted(set(_truth(cohort)) - set(first))  # none twice
    recs = read_results(tmp_path / RESULTS_NAME)
    assert sorted(r["key"] for r in recs if r["kind"] == "scan") == sorted(_truth(cohort))
    lines = (tmp_path / RESULTS_NAME).read_text().splitlines()
    assert all(json.loads(line) for line in lines)  # the partial line was cut, none broken
    assert again.forecasts == 1 and any(r["kind"] == "course" for r in recs)
    # a third run has nothing to do
    idle = FakeServer(_truth(cohort))
    s3 = asyncio.run(evaluate(rows, idle, tmp_path))
    assert (s3.done, s3.skipped, s3.courses, idle.seen) == (0, len(rows), 0, [])


def test_a_failed_scan_is_recorded_and_counted(cohort: Path, tmp_path: Path) -> None:
    rows = read_manifest(cohort)[:8]
    server = FakeServer(_truth(cohort), fail={"scan0002"})
    summary = asyncio.run(evaluate(rows, server, tmp_path, concurrency=2))
    assert (summary.done, summary.failed) == (7, 1)
    m = compute_metrics(read_results(tmp_path / RESULTS_NAME), n_boot=20)
    assert m["counts"]["scans"] == 8 and m["counts"]["failed"] == 1 and m["counts"]["in_metrics"] == 7
    assert m["failures"]["by_type"] == {"NO_LUNG": 1}
    assert m["failures"]["scans"][0]["scan_id"] == "scan0002"
    paths = write_report(tmp_path, n_boot=20)
    with open(paths["per_scan"]) as f:
        per_scan = {r["scan_id"]: r for r in csv.DictReader(f)}
    assert per_scan["scan0002"]["status"] == "error" and per_scan["scan0002"]["error_code"] == "NO_LUNG"
    assert "scan0002" in paths["report"].read_text()
    # not retried by default; --retry-failed runs it again
    again = FakeServer(_truth(cohort))
    assert asyncio.run(evaluate(rows, again, tmp_path)).skipped == 8 and again.seen == []
    s = asyncio.run(evaluate(rows, again, tmp_path, retry_failed=True))
    assert again.seen == ["scan0002"] and s.done == 1
    assert compute_metrics(read_results(tmp_path / RESULTS_NAME), n_boot=0)["counts"]["failed"] == 0


def test_an_unreachable_server_stops_the_run_without_recording_failures(cohort: Path, tmp_path: Path) -> None:
    class Down(FakeServer):
        async def diagnose(self, source: Any, **kw: Any) -> Diagnosis:
            raise ServerUnavailableError("connection refused")

    with pytest.raises(ServerUnavailableError):
        asyncio.run(evaluate(read_manifest(cohort), Down({}), tmp_path))
    assert read_results(tmp_path / RESULTS_NAME) == []


def test_report_from_results_without_a_server(cohort: Path, tmp_path: Path) -> None:
    from covidet.cli import main

    asyncio.run(evaluate(read_manifest(cohort), FakeServer(_truth(cohort)), tmp_path))
    assert (
        main(["evaluate", "--from-results", "--out", str(tmp_path), "--bootstrap", "50", "--rule", "task"])
        == 0
    )
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["operating_point"]["rule"] == "task" and m["operating_point"]["threshold"] == 0.5
    # the stand-in is always right: AUC 1 everywhere, with its CI
    for name in C.CLASS_NAMES:
        assert m["per_class"][name]["auc"] == {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0}
    assert m["multiclass"]["macro_auc_ovr"]["value"] == 1.0
    assert set(m["steps"]) >= {
        "DL#1 viral pneumonia vs not",
        "DL#2 COVID-19 vs other viral",
        "stepwise P(COVID-19)",
    }
    assert any(k.startswith("DL#3") for k in m["steps"])
    # the reference masks came back as the "prediction": Dice 1, no volume error
    assert m["segmentation"]["lung"]["dice"]["value"] == pytest.approx(1.0)
    assert m["segmentation"]["lesion"]["volume_error_ml"]["value"] == pytest.approx(0.0, abs=1e-6)
    assert m["course"]["patients"] == 1 and m["course"]["checks"] == 2
    # the stand-in's forecast reaches every level on day 6 + 2: the scans of days 10 and 14 -> -2, -6
    assert m["course"]["crossing_error_days_mean"]["value"] == pytest.approx(-4.0)
    assert m["course"]["crossing_error_days_mae"]["value"] == pytest.approx(4.0)
    assert m["course"]["by_point"]["5"]["crossing_error_days_mae"]["value"] == pytest.approx(6.0)
    # its stated ranges, days 7-12, hold the scan of day 10, not that of day 14
    assert m["course"]["range_checks"] == 2 and m["course"]["range_closed"]["value"] == 1.0
    assert m["course"]["range_coverage"]["value"] == pytest.approx(0.5)
    assert m["quality"]["codes"]["DEMO_MODELS"]["scans"] == 13
    html = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in html and "stand-in" in html
    assert (tmp_path / "per_scan.csv").read_text().count("\n") == 14


def test_exclude_flagged_leaves_not_usable_scans_out_but_counts_them(tmp_path: Path) -> None:
    recs = []
    for i, label in enumerate(C.CLASS_NAMES * 2):
        quality = [{"code": "LUNG_NOT_COVERED", "severity": "error", "message": "x"}] if i == 0 else []
        probs = {n: (0.7 if n == label else 0.1) for n in C.CLASS_NAMES}
        recs.append(
            {"kind": "scan", "key": f"s{i}", "scan_id": f"s{i}", "label": label, "status": "ok",
             "diagnosis": {"class_probs": probs, "quality": quality, "p_viral": 0.5,
                           "p_covid_given_viral": 0.5, "p_covid_stepwise": 0.25, "provenance": {}}}
        )  # fmt: skip
    kept = compute_metrics(recs, n_boot=0)
    assert kept["counts"]["in_metrics"] == 8 and kept["counts"]["flagged_not_usable"] == 1
    assert kept["quality"]["codes"]["LUNG_NOT_COVERED"]["scans"] == 1
    out = compute_metrics(recs, n_boot=0, exclude_flagged=True)
    assert out["counts"]["in_metrics"] == 7 and out["counts"]["excluded"] == 1


def test_results_log_cuts_a_partial_line(tmp_path: Path) -> None:
    p = tmp_path / RESULTS_NAME
    p.write_text('{"kind": "scan", "key": "a", "status": "ok"}\n{"kind": "scan", "ke')
    with ResultsLog(p) as log:
        assert [r["key"] for r in log.records] == ["a"]
        log.append({"kind": "scan", "key": "b", "status": "ok"})
    assert [json.loads(x)["key"] for x in p.read_text().splitlines()] == ["a", "b"]


def test_the_evaluate_package_stays_off_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, covidet.evaluate, covidet.cli._evaluate; "
        "print([m for m in ('torch', 'onnxruntime') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_reference_masks_from_a_dicom_seg(tmp_path: Path) -> None:
    import pydicom

    from covidet.client._seg import write_seg
    from covidet.evaluate._run import load_mask
    from covidet.phantom import make_phantom, write_dicom_series

    ph = make_phantom("COVID-19", n_slices=10, size=48, seed=21)
    files = write_dicom_series(ph, tmp_path / "dicom", shuffle_filenames=True)
    volume = load_volume(tmp_path / "dicom")
    by_uid = {ds.SOPInstanceUID: ds for ds in (pydicom.dcmread(f) for f in files)}
    sources = [by_uid[u] for u in volume.meta["sop_instance_uids"]]
    d = Diagnosis(
        p_viral=0.5, p_covid_given_viral=0.5, p_covid_stepwise=0.25,
        class_probs=dict.fromkeys(C.CLASS_NAMES, 0.25), topk_slices=(0, 1, 2), lung_volume_ml=1.0,
        lesion_volume_ml=0.1, lesion_ratio=0.1, n_slices_used=3,
        provenance={"lung_seg": {"version": "1", "provenance": "stand-in"},
                    "lesion_seg": {"version": "1", "provenance": "stand-in"}},
    )  # fmt: skip
    write_seg(d, sources, ph.lung_mask, ph.lesion_mask, tmp_path / "seg.dcm")
    lung = load_mask(tmp_path / "seg.dcm", volume, "lung")
    lesion = load_mask(tmp_path / "seg.dcm", volume, "lesion")
    assert np.array_equal(lung, ph.lung_mask > 0) and np.array_equal(lesion, ph.lesion_mask > 0)
    assert lesion.any() and not np.array_equal(lung, lesion)


def test_course_results_from_before_the_ranges_were_recorded_still_report() -> None:
    from covidet.evaluate._report import _course

    def check(day: float, cross: float, **more: Any) -> dict[str, Any]:
        return {
            "point": 4,
            "crossing_day": cross,
            "crossing_error_days": cross - day,
            "interval_predicted_days": cross - 6.0,
            "interval_actual_days": day - 6.0,
            "ratio_error": 0.01,
            **more,
        }

    old = {"status": "ok", "patient_id": "a", "days": [], "ratios": [], "checks": [check(10.0, 9.0)]}
    new = {
        "status": "ok",
        "patient_id": "b",
        "days": [],
        "ratios": [],
        "checks": [check(10.0, 11.0, crossing_range=[8.0, None], in_range=True, reach_probability=0.9)],
    }
    kw = {"n_boot": 50, "seed": 0}
    out = _course([old, new], kw)
    assert out["checks"] == 2 and out["reached"] == 2 and out["range_checks"] == 1
    assert out["range_coverage"]["value"] == 1.0 and out["range_closed"]["value"] == 0.0
    assert "range_coverage" not in _course([old], kw)
