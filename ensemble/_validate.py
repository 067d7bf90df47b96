"""Validation of a scan request: what a CT volume and its spacing must look like."""

from __future__ import annotations

import numpy as np

from covidet._codec import FrameError, decode_volume, frame_shape
from covidet.ensemble._errors import ScanValidationError
from covidet.ensemble._fusion import _check_spacing

__all__ = [
    "MAX_SIZE",
    "MAX_SLICES",
    "MAX_SPACING_MM",
    "MIN_SIZE",
    "MIN_SPACING_MM",
    "scan_volume",
    "validate_scan",
]

MIN_SIZE = 16
MAX_SIZE = 2048
#: The longest scan accepted where no byte limit is set (a pipeline run outside a rendered server).
#: A served pipeline has its `PipelineConfig.max_scan_bytes` instead, which bounds memory
#: whatever the shape: a thin-slice whole-body scan of 3000 slices at 256 x 256 is smaller than
#: 2000 slices at 512 x 512 and is admitted (the scan length is never capped on its own).
MAX_SLICES = 2000
MAX_SPACING_MM = 50.0
#: Below this a spacing is not a CT's (its smallest voxels are ~0.2 mm): a unit mistake (metres,
#: or a spacing left at 1e-6) that would otherwise be answered with a lung volume of 0 mL.
MIN_SPACING_MM = 0.1


def validate_scan(ct: np.ndarray, spacing: np.ndarray | None, *, max_bytes: int | None = None) -> None:
    """Raise `ScanValidationError` saying what is wrong with the request and how to fix it.
    ``max_bytes``: the largest scan this server admits (`PipelineConfig.max_scan_bytes`)."""
    if spacing is None:
        raise ScanValidationError(
            "the request has no SPACING: send the voxel spacing in mm (slice, row, column) with the CT"
        )
    if ct.ndim != 3:
        raise ScanValidationError(
            f"CT must be a 3D volume [slices, rows, columns], got rank {ct.ndim} shape "
            f"{list(ct.shape)}; stack the slices along the first axis"
        )
    if ct.dtype != np.int16:
        raise ScanValidationError(f"CT must be int16 Hounsfield units, got {ct.dtype}")
    _check_shape(ct.shape, max_bytes)
    sp = np.asarray(spacing, dtype=np.float64).reshape(-1)
    if sp.shape != (3,):
        raise ScanValidationError(f"SPACING must have 3 values (slice, row, column in mm), got {sp.shape[0]}")
    dz, dy, dx = _check_spacing(tuple(sp))
    if max(dz, dy, dx) > MAX_SPACING_MM or min(dz, dy, dx) < MIN_SPACING_MM:
        raise ScanValidationError(
            f"spacing {[dz, dy, dx]} mm is implausible for CT (between {MIN_SPACING_MM} and "
            f"{MAX_SPACING_MM} mm); send the voxel size in millimetres"
        )
    step = max(1, ct.size // 200_000)
    sample = ct.reshape(-1)[::step]
    outside = np.count_nonzero((sample < -1100) | (sample > 3100)) / sample.size
    if outside > 0.99:
        raise ScanValidationError(
            "the volume does not look like Hounsfield units (over 99% of voxels outside "
            "-1100..3100); apply RescaleSlope/RescaleIntercept before sending"
        )


def _check_shape(shape: tuple[int, ...], max_bytes: int | None = None) -> None:
    s, h, w = shape
    if s < 1:
        raise ScanValidationError("CT has no slices; send at least one slice")
    if max_bytes is None and s > MAX_SLICES:
        raise ScanValidationError(
            f"CT has {s} slices; at most {MAX_SLICES} are accepted without a byte limit "
            "(a served pipeline bounds the scan by its --max-scan-bytes instead)"
        )
    if not (MIN_SIZE <= h <= MAX_SIZE and MIN_SIZE <= w <= MAX_SIZE):
        raise ScanValidationError(
            f"slices are {h}x{w}; rows and columns must be between {MIN_SIZE} and {MAX_SIZE}"
        )
    if max_bytes is not None and 2 * s * h * w > max_bytes:
        raise ScanValidationError(
            f"the scan ({s}x{h}x{w}, {2 * s * h * w / 2**20:.0f} MiB as int16) is larger than this "
            f"server admits ({max_bytes / 2**20:.0f} MiB, its --max-scan-bytes); send fewer or "
            "smaller slices, or ask its operator to raise the limit"
        )


def scan_volume(
    ct: np.ndarray | None, compressed: np.ndarray | None, *, max_bytes: int | None = None
) -> np.ndarray:
    """The request's CT volume: its CT input, or its CT_COMPRESSED frame decoded (a frame's
    stated shape is checked, against ``max_bytes`` too, before it is decompressed). Exactly one
    of them must be given."""
    if (ct is None) == (compressed is None):
        given = "both" if ct is not None else "neither"
        raise ScanValidationError(
            f"a request carries the CT volume in exactly one of CT (int16 voxels) and CT_COMPRESSED "
            f"(a covidet frame), got {given}; send one of them"
        )
    if ct is not None:
        return ct
    assert compressed is not None
    frames = compressed.reshape(-1)
    if frames.size != 1 or not isinstance(frames[0], (bytes, bytearray, memoryview)):
        raise ScanValidationError(f"CT_COMPRESSED must be one frame (bytes), got {frames.size} elements")
    try:
        shape = frame_shape(frames[0])
        _check_shape(shape, max_bytes)
        return decode_volume(frames[0], max_voxels=shape[0] * shape[1] * shape[2])
    except FrameError as exc:
        raise ScanValidationError(str(exc)) from exc
