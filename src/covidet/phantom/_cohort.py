"""A labelled phantom cohort for `covidet evaluate`: DICOM series, reference masks, ``manifest.csv``.

``write_cohort(n, out)`` writes ``n`` scans, the classes in turn (so 40 scans give 10 per class),
each as a DICOM series with its reference lung and lesion masks as NIfTI on the same grid (the
phantom's own truth), and ``manifest.csv`` in the format `covidet evaluate` reads. Viral
pneumonia scans (influenza, COVID-19) carry synthetic clinical features of their class
(`covidet.clinical.generate_clinical`), so the report has DL#3.

``courses=K`` adds K COVID-19 patients with ``len(COURSE_DAYS)`` serial scans each (patient id and
day in the manifest): one phantom per patient whose lesions are kept in part, the kept fraction
following a peak-and-recovery course. Only the public `make_phantom` is used: the scans of a
course are that phantom with the lesion voxels outside the kept fraction turned into healthy lung.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from covidet import _contract as C
from covidet.phantom._generate import Phantom, make_phantom
from covidet.phantom._write import write_dicom_series, write_nifti

__all__ = ["COURSE_DAYS", "MANIFEST_COLUMNS", "CohortScan", "course_phantom", "write_cohort"]

#: Scan days of a synthetic course (the first three fit the forecast, the rest check it).
COURSE_DAYS: tuple[float, ...] = (0.0, 3.0, 6.0, 10.0, 14.0)
#: The manifest's fixed columns (clinical features follow, named as in CLINICAL_SCHEMA).
MANIFEST_COLUMNS: tuple[str, ...] = (
    "scan_id",
    "path",
    "label",
    "lung_mask",
    "lesion_mask",
    "patient_id",
    "day",
)
_HEALTHY_LUNG_HU = -860.0


@dataclass(frozen=True)
class CohortScan:
    """One written scan: its manifest row (paths relative to the manifest's folder)."""

    scan_id: str
    label: str
    path: str
    lung_mask: str
    lesion_mask: str
    patient_id: str = ""
    day: float | None = None
    clinical: tuple[float, ...] | None = None


def _course_fraction(day: float, peak_day: float) -> float:
    """Kept lesion fraction on ``day``: rises to 1 at ``peak_day``, then recovers."""
    s = (day + 1.0) / (peak_day + 1.0)
    return float(s * np.exp(1.0 - s))


def course_phantom(ph: Phantom, fraction: float, seed: int) -> Phantom:
    """``ph`` with only ``fraction`` of its lesion voxels kept (those lowest along a random
    direction, so lesions shrink from one side); the others become healthy lung (vessels, which
    are denser than any lesion, stay)."""
    fraction = float(np.clip(fraction, 0.0, 1.0))
    lesion = ph.lesion_mask > 0
    idx = np.argwhere(lesion)
    keep = np.zeros_like(lesion)
    if idx.size and fraction > 0:
        rng = np.random.default_rng(seed)
        direction = rng.normal(size=3)
        field = idx @ (direction / np.linalg.norm(direction) * np.asarray(ph.spacing))
        n_keep = round(fraction * len(idx))
        if n_keep:
            chosen = idx[np.argsort(field, kind="stable")[:n_keep]]
            keep[tuple(chosen.T)] = True
    removed = lesion & ~keep
    # the lesion's soft rim just outside its mask goes too: every lung voxel near a removed one
    near = removed.copy()
    for axis in (1, 2):
        near |= np.roll(removed, 2, axis) | np.roll(removed, -2, axis)
    lung = ph.lung_mask > 0
    heal = near & lung & ~keep & (ph.hu < -50)
    hu = ph.hu.copy()
    noise = np.random.default_rng(seed + 1).normal(0.0, 18.0, int(heal.sum()))
    hu[heal] = np.rint(_HEALTHY_LUNG_HU + noise).astype(np.int16)
    return Phantom(
        hu=hu,
        lung_mask=ph.lung_mask,
        lesion_mask=keep.astype(np.uint8),
        spacing=ph.spacing,
        kind=ph.kind,
        seed=ph.seed,
        meta={**ph.meta, "lesion_fraction": fraction},
    )


def _write_scan(ph: Phantom, out: Path, scan_id: str, patient_id: str) -> tuple[str, str, str]:
    folder = out / scan_id
    write_dicom_series(ph, folder / "dicom", patient_id=patient_id, patient_name=f"COHORT^{patient_id}")
    write_nifti(ph.lung_mask, folder / "lung.nii.gz", ph.spacing)
    write_nifti(ph.lesion_mask, folder / "lesion.nii.gz", ph.spacing)
    return f"{scan_id}/dicom", f"{scan_id}/lung.nii.gz", f"{scan_id}/lesion.nii.gz"


def _clinical_rows(labels: list[str], seed: int) -> dict[int, tuple[float, ...]]:
    """Synthetic clinical features of its class for every viral pneumonia scan (index -> row)."""
    from covidet.clinical._synthetic import generate_clinical

    viral = [i for i, k in enumerate(labels) if k in ("influenza", "COVID-19")]
    if not viral:
        return {}
    rows: dict[int, tuple[float, ...]] = {}
    # draw a pool of each class and hand them out in turn
    x, y = generate_clinical(4 * len(viral) + 8, seed)
    pools = {
        1: [r for r, t in zip(x, y, strict=True) if t == 1],
        0: [r for r, t in zip(x, y, strict=True) if t == 0],
    }
    for i in viral:
        pool = pools[int(labels[i] == "COVID-19")]
        rows[i] = tuple(float(v) for v in pool.pop())
    return rows


def write_cohort(
    n: int,
    out: str | Path,
    *,
    n_slices: int = 64,
    size: int = 256,
    seed: int = 0,
    courses: int = 0,
    clinical: bool = True,
    on_scan: object = None,
) -> Path:
    """Write ``n`` labelled scans (classes in turn) plus ``courses`` serial COVID-19 courses under
    ``out`` and return the path of ``out/manifest.csv``. ``on_scan(scan_id)`` is called after
    each scan is written (for a progress bar)."""
    if n < 0 or courses < 0 or n + courses == 0:
        raise ValueError(f"need n >= 0, courses >= 0 and at least one scan, got n={n}, courses={courses}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    labels = [C.CLASS_NAMES[i % len(C.CLASS_NAMES)] for i in range(n)]
    clin = _clinical_rows(labels, seed) if clinical else {}
    scans: list[CohortScan] = []

    def done(scan_id: str) -> None:
        if callable(on_scan):
            on_scan(scan_id)

    for i, kind in enumerate(labels):
        scan_id = f"scan{i:04d}"
        ph = make_phantom(kind, n_slices=n_slices, size=size, seed=seed + i)
        path, lung, lesion = _write_scan(ph, out, scan_id, f"P{i:04d}")
        scans.append(CohortScan(scan_id, kind, path, lung, lesion, clinical=clin.get(i)))
        done(scan_id)
    for p in range(courses):
        patient = f"C{p:03d}"
        base = make_phantom("COVID-19", n_slices=n_slices, size=size, seed=seed + 100_000 + p)
        # the peak between the first and third scan, so the fitted scans show the recovery begin
        peak = float(np.random.default_rng(seed + 200_000 + p).uniform(2.0, 4.0))
        for day in COURSE_DAYS:
            scan_id = f"{patient}_d{int(day):02d}"
            ph = course_phantom(base, _course_fraction(day, peak), seed + 300_000 + p)
            path, lung, lesion = _write_scan(ph, out, scan_id, patient)
            scans.append(CohortScan(scan_id, "COVID-19", path, lung, lesion, patient_id=patient, day=day))
            done(scan_id)
    return write_manifest(out / "manifest.csv", scans)


def write_manifest(path: Path, scans: list[CohortScan]) -> Path:
    """``manifest.csv``: MANIFEST_COLUMNS, then the clinical features (empty when not given)."""
    from covidet.clinical._schema import FEATURE_NAMES

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*MANIFEST_COLUMNS, *FEATURE_NAMES])
        for s in scans:
            feats = [""] * len(FEATURE_NAMES) if s.clinical is None else [_fmt(v) for v in s.clinical]
            day = "" if s.day is None else _fmt(s.day)
            w.writerow([s.scan_id, s.path, s.label, s.lung_mask, s.lesion_mask, s.patient_id, day, *feats])
    return path


def _fmt(v: float) -> str:
    return "" if not np.isfinite(v) else f"{v:g}"
