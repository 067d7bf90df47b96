"""The labelled phantom cohort for `covidet evaluate`: scans of every class, reference masks on
the scan's grid, manifest.csv, serial courses."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from covidet import _contract as C
from covidet.client import load_volume
from covidet.phantom import make_phantom, write_cohort
from covidet.phantom._cohort import COURSE_DAYS, MANIFEST_COLUMNS, course_phantom


def test_a_cohort_has_every_class_masks_on_the_scan_grid_and_a_manifest(tmp_path: Path) -> None:
    manifest = write_cohort(4, tmp_path, n_slices=8, size=48, seed=3)
    with open(manifest) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[: len(MANIFEST_COLUMNS)] == list(MANIFEST_COLUMNS)
    assert [r["label"] for r in rows] == list(C.CLASS_NAMES)
    for r in rows:
        ct = load_volume(tmp_path / r["path"])
        lung = load_volume(tmp_path / r["lung_mask"]).hu
        lesion = load_volume(tmp_path / r["lesion_mask"]).hu
        assert ct.hu.shape == lung.shape == lesion.shape == (8, 48, 48)
        assert lung.any()
        assert not (lesion > 0)[lung == 0].any()  # lesions inside the lung
        assert (lesion.any()) == (r["label"] != "non-pneumonia")
        # the mask overlays the CT: the reference lung is air-like there
        assert float(np.median(ct.hu[lung > 0])) < -500
        viral = r["label"] in ("influenza", "COVID-19")
        assert bool(r["age"]) == viral  # clinical features for DL#3 on the viral scans


def test_courses_have_patient_days_and_a_lesion_burden_that_rises_and_falls(tmp_path: Path) -> None:
    manifest = write_cohort(0, tmp_path, n_slices=12, size=64, seed=5, courses=1, clinical=False)
    with open(manifest) as f:
        rows = list(csv.DictReader(f))
    assert [float(r["day"]) for r in rows] == list(COURSE_DAYS)
    assert {r["patient_id"] for r in rows} == {"C000"} and {r["label"] for r in rows} == {"COVID-19"}
    burden = [int((load_volume(tmp_path / r["lesion_mask"]).hu > 0).sum()) for r in rows]
    peak = int(np.argmax(burden))
    assert 0 < peak < len(burden) - 1, burden
    assert burden[0] < burden[peak] and burden[-1] < burden[peak]


def test_course_phantom_keeps_the_fraction_and_heals_the_rest() -> None:
    ph = make_phantom("COVID-19", n_slices=16, size=64, seed=9)
    half = course_phantom(ph, 0.5, seed=1)
    assert half.lesion_mask.sum() == pytest.approx(0.5 * ph.lesion_mask.sum(), abs=1)
    assert not (half.lesion_mask & ~ph.lesion_mask.astype(bool)).any()
    none = course_phantom(ph, 0.0, seed=1)
    assert none.lesion_mask.sum() == 0
    healed = (ph.lesion_mask > 0) & (ph.hu < -50)
    assert float(none.hu[healed].mean()) < -800  # healthy lung where the lesions were
    assert np.array_equal(course_phantom(ph, 1.0, seed=1).hu, ph.hu)


def test_the_phantom_command_writes_a_cohort(tmp_path: Path) -> None:
    from covidet.cli import main

    assert main(["phantom", "--cohort", "4", "--slices", "6", "--size", "32", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "manifest.csv").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [f"scan{i:04d}" for i in range(4)]
