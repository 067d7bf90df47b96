"""A CT volume as the client sends it, and loading one from an array, NIfTI or DICOM."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from covidet.errors import VolumeError  # the input cannot be read as one CT volume

__all__ = [
    "GEOMETRY_POLICIES",
    "DuplicatePositionError",
    "NotCTError",
    "SeriesGeometryError",
    "SliceSpacingError",
    "Volume",
    "VolumeError",
    "load_volume",
]

#: What the DICOM reader does with a defect it can read past (gaps or uneven steps between
#: slices): nothing, a warning (and ``meta['defects']``), or `SliceSpacingError`.
GEOMETRY_POLICIES = ("ignore", "warn", "raise")


class NotCTError(VolumeError):
    """The series is not a CT (e.g. MR, a secondary capture): covidet reads chest CT only."""


class SeriesGeometryError(VolumeError):
    """The series' slices do not form one regular volume (mixed sizes or orientations)."""


class DuplicatePositionError(SeriesGeometryError):
    """Two slices share one position: the series cannot be stacked unambiguously."""


class SliceSpacingError(SeriesGeometryError):
    """Gaps or uneven steps between slices (raised only with policy='raise')."""


@dataclass
class Volume:
    """HU voxels [slices, rows, columns] (slice 0 most superior) and spacing in mm.

    ``meta`` holds non-identifying geometry only (orientation, first position, series UID for
    referencing results); patient identifiers are never read into it.
    """

    hu: np.ndarray
    spacing: tuple[float, float, float]
    source: str = "array"
    series_uid: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_slices(self) -> int:
        return int(self.hu.shape[0])


def _as_int16(array: np.ndarray, source: str) -> np.ndarray:
    a = np.asarray(array)
    if a.ndim != 3:
        raise VolumeError(f"{source}: expected a 3D volume [slices, rows, columns], got shape {a.shape}")
    if a.dtype == np.int16:
        return a
    if not np.issubdtype(a.dtype, np.number):
        raise VolumeError(f"{source}: expected numeric HU values, got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
        raise VolumeError(f"{source}: the volume contains NaN or infinite values")
    lo, hi = float(a.min()), float(a.max())
    if lo < -32768 or hi > 32767:
        raise VolumeError(f"{source}: HU values {lo:.0f}..{hi:.0f} do not fit in int16")
    return np.rint(a).astype(np.int16) if np.issubdtype(a.dtype, np.floating) else a.astype(np.int16)


def load_volume(
    obj: Any, spacing: Any = None, *, series_uid: str | None = None, policy: str = "warn"
) -> Volume:
    """A `Volume` from a numpy array (needs ``spacing``), a NIfTI file, a DICOM folder/file/DICOMDIR,
    or a list of DICOM files forming one series.

    For DICOM: ``series_uid`` picks one series where there are several (default: the one with the
    most slices), and ``policy`` (`GEOMETRY_POLICIES`) says what a gap or an uneven step between
    slices does: ``"raise"`` (`SliceSpacingError`) for a site that must not measure volumes on
    such a series, ``"warn"`` (the default: a warning and ``meta['defects']``) or ``"ignore"``.
    """
    if policy not in GEOMETRY_POLICIES:
        raise ValueError(f"policy must be one of {GEOMETRY_POLICIES}, got {policy!r}")
    if isinstance(obj, Volume):
        return obj
    if isinstance(obj, (list, tuple)):
        from covidet.client._dicom import read_dicom_series

        return read_dicom_series(obj, series_uid=series_uid, policy=policy)
    if isinstance(obj, np.ndarray):
        if spacing is None:
            raise VolumeError("a numpy volume needs spacing=(slice, row, column) in mm")
        sp = tuple(float(v) for v in np.asarray(spacing, dtype=np.float64).reshape(-1))
        if len(sp) != 3:
            raise VolumeError(f"spacing must have 3 values (slice, row, column mm), got {len(sp)}")
        return Volume(_as_int16(obj, "array"), sp)  # type: ignore[arg-type]
    path = Path(obj)
    if not path.exists():
        raise VolumeError(f"{path}: no such file or folder")
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        if series_uid is not None:
            raise VolumeError(f"{path}: series_uid picks a DICOM series; a NIfTI file holds one volume")
        from covidet.client._nifti import read_nifti

        return read_nifti(path)
    from covidet.client._dicom import read_dicom_series

    return read_dicom_series(path, series_uid=series_uid, policy=policy)
