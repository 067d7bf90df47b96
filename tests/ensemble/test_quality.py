"""Quality flags: each check fires on what it names and stays quiet on a normal chest CT."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from covidet._contract import quality_from_json, quality_to_json
from covidet.ensemble import QUALITY_CODES, ScanMeasures, check_quality

TRAINED = {"lung_seg": {"variant": "full", "trained": True}}


def _normal(**changes: object) -> ScanMeasures:
    counts = np.zeros(200, np.int64)
    counts[20:180] = np.hanning(160) * 40000 + 500  # lungs well inside the scan range
    base = ScanMeasures(
        lung_counts=counts,
        spacing=(1.25, 0.7, 0.7),
        lung_ml=4800.0,
        lesion_ratio=0.01,
        lung_mean_hu=-820.0,
        models=TRAINED,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def _codes(m: ScanMeasures) -> dict[str, str]:
    return {f.code: f.severity for f in check_quality(m)}


def test_a_normal_chest_ct_with_trained_models_has_no_flag() -> None:
    assert check_quality(_normal()) == []


def test_lungs_cut_off_at_either_end_are_an_error() -> None:
    for end in (0, -1):
        counts = _normal().lung_counts.copy()
        counts[end] = 30000
        assert _codes(_normal(lung_counts=counts))["LUNG_NOT_COVERED"] == "error"
    counts = _normal().lung_counts.copy()
    counts[0] = 50  # a few voxels of partial volume at the edge are not a cut-off lung
    assert "LUNG_NOT_COVERED" not in _codes(_normal(lung_counts=counts))


def test_an_abdominal_scan_with_only_the_lung_bases() -> None:
    counts = np.zeros(120, np.int64)
    counts[:15] = np.linspace(9000, 200, 15)  # lung bases at the top, then the abdomen
    flags = _codes(_normal(lung_counts=counts, lung_ml=300.0))
    assert flags["LUNG_NOT_COVERED"] == "error"
    assert flags["NOT_CHEST_CT"] == "error"
    assert flags["LUNG_VOLUME_OUT_OF_RANGE"] == "error"


@pytest.mark.parametrize(
    ("lung_ml", "severity"), [(500.0, "error"), (1500.0, "warning"), (9000.0, "warning"), (12000.0, "error")]
)
def test_lung_volume_outside_the_adult_range(lung_ml: float, severity: str) -> None:
    assert _codes(_normal(lung_ml=lung_ml))["LUNG_VOLUME_OUT_OF_RANGE"] == severity


@pytest.mark.parametrize(("hu", "severity"), [(-500.0, "warning"), (-100.0, "error")])
def test_dense_lung_mask(hu: float, severity: str) -> None:
    assert _codes(_normal(lung_mean_hu=hu))["LUNG_DENSITY_HIGH"] == severity
    assert "LUNG_DENSITY_HIGH" not in _codes(_normal(lung_mean_hu=float("nan")))


def test_implausible_lesion_burden() -> None:
    assert _codes(_normal(lesion_ratio=0.9))["LESION_RATIO_IMPLAUSIBLE"] == "error"
    assert _codes(_normal(lesion_ratio=0.5, lung_ml=1500.0))["LESION_RATIO_IMPLAUSIBLE"] == "error"
    assert "LESION_RATIO_IMPLAUSIBLE" not in _codes(_normal(lesion_ratio=0.5))  # severe, but credible


def test_thick_slices_and_coarse_pixels_are_warnings() -> None:
    flags = _codes(_normal(spacing=(6.0, 1.6, 1.6)))
    assert flags == {"THICK_SLICES": "warning", "COARSE_PIXELS": "warning"}


def test_demo_and_untrained_models_always_warn() -> None:
    demo = {"lung_seg": {"variant": "demo", "trained": True}, "x": {"variant": "full", "trained": False}}
    (flag,) = check_quality(_normal(models=demo))
    assert (flag.code, flag.severity) == ("DEMO_MODELS", "warning")
    assert "lung_seg" in flag.message and "x" in flag.message


def test_errors_come_first_and_the_json_has_code_severity_message() -> None:
    flags = check_quality(_normal(spacing=(6.0, 0.7, 0.7), lung_ml=300.0))
    assert [f.severity for f in flags] == ["error", "warning"]
    data = json.loads(quality_to_json(flags))
    assert data[0].keys() == {"code", "severity", "message"}
    assert all(d["code"] in QUALITY_CODES for d in data)
    assert quality_from_json(quality_to_json(flags)) == tuple(flags)
