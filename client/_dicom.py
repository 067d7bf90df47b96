"""DICOM CT series input: each file read once, sorted by position, pixels through `_dicom_pixels`."""

from __future__ import annotations

import os
import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from covidet.client import _volume as V
from covidet.client._dicom_pixels import Plane, assemble_hu, read_files
from covidet.client._volume import Volume, VolumeError

__all__ = ["read_dicom_series"]

#: CT Image, Enhanced CT Image, Legacy Converted Enhanced CT Image storage.
_CT_STORAGE = {"1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.2.2"}


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
    """The whole header of ``path`` (the SEG/SR writer needs every module); None if not DICOM."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError):
        return None


def _rescale(item: Any | None) -> tuple[float, float]:
    """(RescaleSlope, RescaleIntercept) of a dataset or functional-group item; (1, 0) if absent."""
    return float(getattr(item, "RescaleSlope", 1) or 1), float(getattr(item, "RescaleIntercept", 0) or 0)


def _map(fn: Any, items: Iterable[Any]) -> list[Any]:
    """``fn`` over ``items`` in threads (the SEG/SR writer reads its source headers with it)."""
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        return list(pool.map(fn, items))


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


@dataclass(frozen=True)
class _Slice:
    """One image plane: a classic single-frame instance, or one frame of an enhanced CT."""

    file: Path
    frame: int | None  # 0-based frame of a multi-frame instance; None for a single-frame one
    position: tuple[float, ...]
    orientation: tuple[float, ...]
    pixel_spacing: tuple[float, ...]
    rows: int
    columns: int
    slope: float
    intercept: float
    sop_uid: str
    thickness: float | None

    @property
    def name(self) -> str:
        return self.file.name if self.frame is None else f"{self.file.name} frame {self.frame + 1}"


def _floats(value: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in value)


def _is_enhanced(h: Any) -> bool:
    return int(getattr(h, "NumberOfFrames", 1) or 1) > 1 and "PerFrameFunctionalGroupsSequence" in h


def _group(h: Any, frame: int, name: str) -> Any | None:
    """A functional-group item for ``frame``: per-frame if present there, else shared."""
    for seq_name in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        seq = getattr(h, seq_name, None)
        if not seq:
            continue
        item = seq[frame] if seq_name.startswith("PerFrame") else seq[0]
        if name in item and len(item[name].value):
            return item[name].value[0]
    return None


def _slices(f: Path, h: Any) -> list[_Slice]:
    """The planes of one instance (several for an enhanced multi-frame CT); [] if it has no geometry."""
    sop = str(getattr(h, "SOPInstanceUID", "") or "")
    rows, cols = int(h.Rows), int(h.Columns)

    def plane(frame: int | None, pos: Any, ori: Any, meas: Any, rescale: Any) -> _Slice:
        thick = getattr(meas, "SliceThickness", None)
        return _Slice(
            f,
            frame,
            _floats(pos.ImagePositionPatient),
            _floats(ori.ImageOrientationPatient),
            _floats(meas.PixelSpacing),
            rows,
            cols,
            *_rescale(rescale),
            sop,
            float(thick) if thick else None,
        )

    if not _is_enhanced(h):
        has_geometry = hasattr(h, "ImagePositionPatient") and hasattr(h, "PixelSpacing")
        return [plane(None, h, h, h, h)] if has_geometry else []
    out = []
    for k in range(int(h.NumberOfFrames)):
        pos = _group(h, k, "PlanePositionSequence")
        ori = _group(h, k, "PlaneOrientationSequence")
        meas = _group(h, k, "PixelMeasuresSequence")
        if pos is None or ori is None or meas is None or "PixelSpacing" not in meas:
            raise V.SeriesGeometryError(
                f"{f}: frame {k + 1} has no plane position, orientation or pixel spacing in its "
                "functional groups; the enhanced CT cannot be stacked"
            )
        out.append(plane(k, pos, ori, meas, _group(h, k, "PixelValueTransformationSequence")))
    return out


def read_dicom_series(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    series_uid: str | None = None,
    policy: str = "warn",
) -> Volume:
    """Read one CT series from a folder (recursive), a file, a DICOMDIR or an explicit list of files.

    Classic single-frame series and enhanced multi-frame CT (geometry from the functional groups)
    both work. With several series, the caller's ``series_uid`` or else the one with the most
    slices is taken (``meta['series_choice']`` says which and why). Slices are sorted along the
    slice normal (superior first for axial scans), never by file name, InstanceNumber or frame order.
    """
    if policy not in V.GEOMETRY_POLICIES:
        raise ValueError(f"policy must be one of {V.GEOMETRY_POLICIES}, got {policy!r}")
    if isinstance(path, (str, os.PathLike)):
        root = Path(path)
        files = _files(root)
    else:
        files = _listed_files(path)
        root = Path(os.path.commonpath([str(f.resolve().parent) for f in files]))
    read = [d for d in read_files(files) if d is not None]
    headers = [(d.path, d.header) for d in read]
    if not headers:
        raise VolumeError(f"{root}: no DICOM files found")
    series: dict[str, list[_Slice]] = defaultdict(list)
    first_header: dict[str, Any] = {}
    localizers = 0
    for f, h in headers:
        if "LOCALIZER" in [str(v).upper() for v in getattr(h, "ImageType", [])]:
            localizers += 1  # scout images are not part of the volume
            continue
        planes = _slices(f, h)
        if planes:
            uid = str(getattr(h, "SeriesInstanceUID", "") or "")
            series[uid].extend(planes)
            first_header.setdefault(uid, h)
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
    chosen_files = {it.file for it in items}
    first = first_header[chosen]
    modality = str(getattr(first, "Modality", ""))
    if modality != "CT" and str(getattr(first, "SOPClassUID", "")) not in _CT_STORAGE:
        raise V.NotCTError(
            f"{root}: series modality is {modality or 'unknown'!r}, not CT; covidet reads chest CT only"
        )
    s0 = items[0]
    orient = np.array(s0.orientation)
    shape = (s0.rows, s0.columns)
    for it in items:
        if (it.rows, it.columns) != shape:
            raise V.SeriesGeometryError(
                f"{it.file}: slice size {it.rows}x{it.columns} differs from {shape[0]}x{shape[1]}"
            )
        if not np.allclose(it.orientation, orient, atol=1e-4):
            raise V.SeriesGeometryError(
                f"{it.name}: ImageOrientationPatient differs from the series' first slice"
            )
    normal = np.cross(orient[:3], orient[3:])
    pos = np.array([np.dot(normal, it.position) for it in items])
    order = np.argsort(-pos, kind="stable")  # along -normal: superior first for axial scans
    pos = pos[order]
    steps = np.abs(np.diff(pos))
    defects: list[str] = []
    if localizers:
        defects.append(f"{localizers} localizer/scout image(s) ignored")
    if steps.size and steps.min() < 1e-3:
        k = int(np.argmin(steps))
        raise V.DuplicatePositionError(
            f"{items[order[k]].name} and {items[order[k + 1]].name} share the position "
            f"{pos[k]:.2f} mm along the slice normal; remove the duplicate slice"
        )
    dz = float(np.median(steps)) if steps.size else float(s0.thickness or 1.0)
    if steps.size and steps.max() > 1.5 * dz:
        _defect(
            policy,
            defects,
            f"gap in the series: a step of {steps.max():.2f} mm where the median "
            f"is {dz:.2f} mm (missing slices?)",
            V.SliceSpacingError,
        )
    elif steps.size and (steps.max() - steps.min()) > 0.05 * dz:
        _defect(
            policy,
            defects,
            f"uneven slice steps {steps.min():.2f}..{steps.max():.2f} mm; volumes use the median {dz:.2f} mm",
            V.SliceSpacingError,
        )
    if len(items) > 1:
        p0 = np.array(items[order[0]].position)
        p1 = np.array(items[order[-1]].position)
        direction = (p1 - p0) / max(np.linalg.norm(p1 - p0), 1e-6)
        tilt = float(np.degrees(np.arccos(min(1.0, abs(float(np.dot(direction, normal)))))))
        if tilt > 0.5:
            _defect(
                policy,
                defects,
                f"gantry tilt of {tilt:.1f} degrees: the slices are sheared along the table axis; masks "
                "are per source slice and stay aligned with it, volumes are unchanged (a shear keeps "
                "volume); only 3D views such as the coronal overview show the shear",
                V.SeriesGeometryError,
            )
    dy, dx = s0.pixel_spacing
    ordered = [items[i] for i in order]
    by_path = {d.path: d for d in read}
    for d in read:
        if d.path not in chosen_files:
            d.data = b""  # the other series' bytes are not needed: free them before the pixels
    hu = assemble_hu([Plane(by_path[it.file], it.frame, it.slope, it.intercept) for it in ordered])
    return Volume(
        hu=hu,
        spacing=(dz, dy, dx),
        source=str(root),
        series_uid=chosen or None,
        meta={
            "format": "dicom",
            "series_choice": why,
            "defects": defects,
            "n_series": len(series),
            "orientation": orient.tolist(),
            "first_position": list(ordered[0].position),
            "series_description": str(getattr(first, "SeriesDescription", "")),
            "sop_instance_uids": [it.sop_uid for it in ordered],
            # enhanced CT: the source frame (0-based) of each volume slice, for the SEG
            "source_frames": [it.frame for it in ordered] if ordered[0].frame is not None else None,
        },
    )
