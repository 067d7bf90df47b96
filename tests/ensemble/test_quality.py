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


def test_a_later_step_names_its_demo_model_in_the_one_demo_flag() -> None:
    from covidet.ensemble import with_step_model

    demo_svm = {"variant": "demo", "trained": True}
    imaging = {"lung_seg": {"variant": "demo", "trained": True}}
    flags = check_quality(_normal(spacing=(1.25, 1.6, 1.6), lung_ml=300.0, models=imaging))
    quality, provenance = quality_to_json(flags), json.dumps(imaging)
    out = quality_from_json(with_step_model(quality, provenance, "clinical_svm", demo_svm, answered=True))
    assert [f.code for f in out].count("DEMO_MODELS") == 1  # one flag names every demo model
    (demo,) = [f for f in out if f.code == "DEMO_MODELS"]
    assert "clinical_svm" in demo.message and "lung_seg" in demo.message
    assert [f.severity for f in out] == ["error", "warning", "warning"]  # errors still first
    # the SVM did not fuse the answer (no clinical data): the flags pass unchanged
    assert with_step_model(quality, provenance, "clinical_svm", demo_svm, answered=False) == quality
    # trained imaging models and a demo SVM: the flag appears; a trained SVM adds none
    trained = quality_to_json(check_quality(_normal()))
    out = quality_from_json(
        with_step_model(trained, json.dumps(TRAINED), "clinical_svm", demo_svm, answered=True)
    )
    assert [f.code for f in out] == ["DEMO_MODELS"] and "lung_seg" not in out[0].message
    svm = {"variant": None, "trained": True}
    assert with_step_model(trained, json.dumps(TRAINED), "clinical_svm", svm, answered=True) == trained
    # called alone (no imaging step): the SVM's own flag
    alone = quality_from_json(with_step_model(None, None, "clinical_svm", demo_svm, answered=True))
    assert [f.code for f in alone] == ["DEMO_MODELS"]


@pytest.mark.parametrize(
    ("quality", "provenance", "message"),
    [
        (b"[]", None, "come together"),
        (None, b"{}", "come together"),
        (b"not json", b"{}", "imaging step's JSON"),
        (b"[]", b"[1, 2]", "object of model entries"),
        (b'[{"code": "X"}]', b"{}", "imaging step's JSON"),
    ],
)
def test_a_later_step_refuses_malformed_imaging_outputs(
    quality: bytes | None, provenance: bytes | None, message: str
) -> None:
    from covidet.ensemble import with_step_model
    from covidet.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match=message):
        with_step_model(quality, provenance, "clinical_svm", {}, answered=True)
