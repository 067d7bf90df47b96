"""DICOM CT series input through pydicom: headers first, pixels in parallel, sorted by position."""

from __future__ import annotations

import os
import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from covidet.client._volume import Volume, VolumeError

__all__ = [
    "POLICIES",
    "DuplicatePositionError",
    "NotCTError",
    "SeriesGeometryError",
    "SliceSpacingError",
    "read_dicom_series",
]

_CT_STORAGE = {"1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1"}


class NotCTError(VolumeError):
    """The series is not a CT (e.g. MR, a secondary capture): covidet reads chest CT only."""


class SeriesGeometryError(VolumeError):
    """The series' slices do not form one regular volume (mixed sizes or orientations)."""


def _files(path: Path) -> list[Path]:
    if path.is_file() and path.name.upper() == "DICOMDIR":
        return _dicomdir_files(path)
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and p.name != "DICOMDIR")


def _dicomdir_files(path: Path) -> list[Path]:
    """The instances a DICOMDIR references (PS3.10 media), read with pydicom's FileSet."""
    from pydicom.fileset import FileSet

    try:
        fs = FileSet(path)
    except Exception as exc:  # pydicom raises several types for a malformed DICOMDIR
        raise VolumeError(f"{path}: not a readable DICOMDIR ({exc})") from exc
    return sorted(Path(instance.path) for instance in fs)


def _header(path: Path) -> Any | None:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError):
        return None


def _pixels(path: Path) -> np.ndarray:
    import pydicom

    ds = pydicom.dcmread(path)
    arr = ds.pixel_array.astype(np.float32)
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
    return np.clip(np.rint(arr * slope + intercept), -32768, 32767).astype(np.int16)


def _map(fn: Any, items: Iterable[Any]) -> list[Any]:
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        return list(pool.map(fn, items))


POLICIES = ("ignore", "warn", "raise")


class DuplicatePositionError(SeriesGeometryError):
    """Two slices share one position: the series cannot be stacked unambiguously."""


class SliceSpacingError(SeriesGeometryError):
    """Gaps or uneven steps between slices (raised only with policy='raise')."""


def _defect(policy: str, defects: list[str], message: str, exc: type[VolumeError]) -> None:
    defects.append(message)
    if policy == "raise":
        raise exc(message)
    if policy == "warn":
        warnings.warn(message, stacklevel=3)


def _listed_files(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    files = [Path(p) for p in paths]
    if not files:
        raise VolumeError("an empty list of files: pass the DICOM files of one series")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise VolumeError(f"{len(missing)} listed file(s) do not exist, e.g. {missing[0]}; check the list")
    return files


def read_dicom_series(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    series_uid: str | None = None,
    policy: str = "warn",
) -> Volume:
    """Read one CT series from a folder (recursive), a file, a DICOMDIR or an explicit list of files.

    With several series, the caller's ``series_uid`` or else the one with the most slices is
    taken (``meta['series_choice']`` says which and why). Slices are sorted along the slice normal
    (superior first for axial scans), never by file name or InstanceNumber.
    """
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    if isinstance(path, (str, os.PathLike)):
        root = Path(path)
        files = _files(root)
    else:
        files = _listed_files(path)
        root = Path(os.path.commonpath([str(f.resolve().parent) for f in files]))
    headers = [(f, h) for f, h in zip(files, _map(_header, files), strict=True) if h is not None]
    if not headers:
        raise VolumeError(f"{root}: no DICOM files found")
    series: dict[str, list[tuple[Path, Any]]] = defaultdict(list)
    localizers = 0
    for f, h in headers:
        if "LOCALIZER" in [str(v).upper() for v in getattr(h, "ImageType", [])]:
            localizers += 1  # scout images are not part of the volume
            continue
        if hasattr(h, "ImagePositionPatient") and hasattr(h, "PixelSpacing"):
            series[str(getattr(h, "SeriesInstanceUID", "") or "")].append((f, h))
    if not series:
        modalities = sorted({str(getattr(h, "Modality", "?")) for _, h in headers})
        raise VolumeError(f"{root}: no image slices with position and spacing (modalities {modalities})")
    if series_uid is not None:
        if series_uid not in series:
            raise VolumeError(f"{root}: series {series_uid} not found; present: {sorted(series)}")
        chosen, why = series_uid, "requested by the caller"
    else:
        chosen = max(series, key=lambda uid: len(series[uid]))
        why = f"most slices of {len(series)} series" if len(series) > 1 else "only series"
    items = series[chosen]
    first = items[0][1]
    modality = str(getattr(first, "Modality", ""))
    if modality != "CT" and str(getattr(first, "SOPClassUID", "")) not in _CT_STORAGE:
        raise NotCTError(
            f"{root}: series modality is {modality or 'unknown'!r}, not CT; covidet reads chest CT only"
        )
    orient = np.array([float(v) for v in first.ImageOrientationPatient])
    shape = (int(first.Rows), int(first.Columns))
    for f, h in items:
        if (int(h.Rows), int(h.Columns)) != shape:
            raise SeriesGeometryError(
                f"{f}: slice size {h.Rows}x{h.Columns} differs from {shape[0]}x{shape[1]}"
            )
        if not np.allclose([float(v) for v in h.ImageOrientationPatient], orient, atol=1e-4):
            raise SeriesGeometryError(f"{f}: ImageOrientationPatient differs from the series' first slice")
    normal = np.cross(orient[:3], orient[3:])
    pos = np.array([np.dot(normal, [float(v) for v in h.ImagePositionPatient]) for _, h in items])
    order = np.argsort(-pos, kind="stable")  # along -normal: superior first for axial scans
    pos = pos[order]
    steps = np.abs(np.diff(pos))
    defects: list[str] = []
    if localizers:
        defects.append(f"{localizers} localizer/scout image(s) ignored")
    if steps.size and steps.min() < 1e-3:
        k = int(np.argmin(steps))
        raise DuplicatePositionError(
            f"{items[order[k]][0].name} and {items[order[k + 1]][0].name} share the position "
            f"{pos[k]:.2f} mm along the slice normal; remove the duplicate slice"
        )
    dz = float(np.median(steps)) if steps.size else float(getattr(first, "SliceThickness", 1.0) or 1.0)
    if steps.size and steps.max() > 1.5 * dz:
        _defect(
            policy,
            defects,
            f"gap in the series: a step of {steps.max():.2f} mm where the median "
            f"is {dz:.2f} mm (missing slices?)",
            SliceSpacingError,
        )
    elif steps.size and (steps.max() - steps.min()) > 0.05 * dz:
        _defect(
            policy,
            defects,
            f"uneven slice steps {steps.min():.2f}..{steps.max():.2f} mm; volumes use the median {dz:.2f} mm",
            SliceSpacingError,
        )
    if len(items) > 1:
        p0 = np.array([float(v) for v in items[order[0]][1].ImagePositionPatient])
        p1 = np.array([float(v) for v in items[order[-1]][1].ImagePositionPatient])
        direction = (p1 - p0) / max(np.linalg.norm(p1 - p0), 1e-6)
        tilt = float(np.degrees(np.arccos(min(1.0, abs(float(np.dot(direction, normal)))))))
        if tilt > 0.5:
            _defect(
                policy,
                defects,
                f"gantry tilt of {tilt:.1f} degrees: slices are sheared; volumes and masks ignore the shear",
                SeriesGeometryError,
            )
    dy, dx = (float(v) for v in first.PixelSpacing)
    slices = _map(_pixels, [items[i][0] for i in order])
    return Volume(
        hu=np.stack(slices),
        spacing=(dz, dy, dx),
        source=str(root),
        series_uid=chosen or None,
        meta={
            "format": "dicom",
            "series_choice": why,
            "defects": defects,
            "n_series": len(series),
            "orientation": orient.tolist(),
            "first_position": [float(v) for v in items[order[0]][1].ImagePositionPatient],
            "series_description": str(getattr(first, "SeriesDescription", "")),
            "sop_instance_uids": [str(getattr(items[i][1], "SOPInstanceUID", "")) for i in order],
        },
    )
