"""A CT volume as the client sends it, and loading one from an array, NIfTI or DICOM."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from covidet.errors import VolumeError  # the input cannot be read as one CT volume

__all__ = ["Volume", "VolumeError", "load_volume"]


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


def load_volume(obj: Any, spacing: Any = None) -> Volume:
    """A `Volume` from a numpy array (needs ``spacing``), a NIfTI file, a DICOM folder/file/DICOMDIR,
    or a list of DICOM files forming one series."""
    if isinstance(obj, Volume):
        return obj
    if isinstance(obj, (list, tuple)):
        from covidet.client._dicom import read_dicom_series

        return read_dicom_series(obj)
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
        from covidet.client._nifti import read_nifti

        return read_nifti(path)
    from covidet.client._dicom import read_dicom_series

    return read_dicom_series(path)
