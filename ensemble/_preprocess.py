"""Windowing and resizing of CT slices (Jin et al. and our lesion model): numpy and torch on the
CPU, or torch on a device (``device="cuda"``: the GPU profiles keep the CPU for the rest)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from covidet.preprocessing import LesionRecord, LungRecord

__all__ = [
    "chunks",
    "lesion_input",
    "lung_input",
    "on_device",
    "on_host",
    "prob_to_mask",
    "resize_on_device",
    "resize_slices",
    "upsample_mask",
    "upsample_on_device",
]


def chunks(n: int, size: int) -> list[slice]:
    """Split ``n`` slices into consecutive batches of at most ``size``."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _resize(t: Any, size: Sequence[int], antialias: bool, mode: str) -> Any:
    """[N,C,H,W] float torch tensor resized to ``size`` (align_corners=False; antialiased only
    when shrinking), on whatever device it lives."""
    import torch.nn.functional as F

    out_hw = (int(size[0]), int(size[1]))
    if tuple(t.shape[-2:]) == out_hw:
        return t
    down = t.shape[-2] > out_hw[0] or t.shape[-1] > out_hw[1]
    return F.interpolate(t, size=out_hw, mode=mode, align_corners=False, antialias=antialias and down)


def resize_slices(
    x: np.ndarray, size: Sequence[int], *, antialias: bool = True, mode: str = "bilinear"
) -> np.ndarray:
    """Resize [N,C,H,W] or [N,H,W] float slices to ``size`` (bilinear, align_corners=False).

    torch is imported here, not at module level: the serving processes that never resize (the
    slice-model, fusion, SVM and GPR stubs) import this package without loading torch.
    """
    import torch

    squeeze = x.ndim == 3
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    out = _resize(t[:, None] if squeeze else t, size, antialias, mode).numpy()
    return out[:, 0] if squeeze else out


def resize_on_device(t: Any, size: Sequence[int]) -> Any:
    """[N,C,H,W] float torch tensor resized to ``size`` where it lives (bilinear, antialiased when
    shrinking, align_corners=False: as `resize_slices`)."""
    return _resize(t, size, True, "bilinear")


def on_device(x: Any, device: str) -> Any:
    """A torch tensor of ``x`` (an array, or a tensor already there) on ``device``, copied in its
    own dtype: int16 HU is half the bytes of float."""
    import torch

    if isinstance(x, torch.Tensor):
        return x.to(device)
    return torch.from_numpy(np.ascontiguousarray(x)).to(device)


def on_host(x: Any) -> np.ndarray:
    """``x`` as a numpy array: an array as it is, a torch tensor copied off its device."""
    return x if isinstance(x, np.ndarray) else x.detach().cpu().numpy()


#: Slices converted to float at a time: bounds the float copies of a 512x512 scan to ~32 MB.
_CHUNK = 32
#: Slices up-sampled to the input grid at a time: an 8 x 512 x 512 float32 temporary is 8 MB.
_MASK_CHUNK = 8


def _per_chunk(
    n: int,
    shape: tuple[int, ...],
    dtype: type,
    fn: Callable[[slice], np.ndarray],
    out: np.ndarray | None = None,
    rows: np.ndarray | None = None,
    size: int = _CHUNK,
) -> np.ndarray:
    """Fill ``out[rows]`` (a new [n, *shape] array by default) chunk by chunk from ``fn(part)``."""
    if out is None:
        out = np.empty((n, *shape), dtype)
    for part in chunks(n, size):
        out[part if rows is None else rows[part]] = fn(part)
    return out


def _model_input(n: int, size: Sequence[int], fn: Callable[[slice], Any], tensor: bool) -> Any:
    """[n,1,h,w] float32 model input of ``n`` slices from ``fn(part)``, `_CHUNK` at a time: a
    numpy array, or with ``tensor`` the torch tensors concatenated where they were made."""
    if not tensor:
        return _per_chunk(n, (1, *size), np.float32, fn)
    import torch

    parts = [fn(part) for part in chunks(n, _CHUNK)]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _clipped(hu: np.ndarray, lo: float | None, hi: float | None) -> np.ndarray:
    """``clip(hu, lo, hi)`` as float32 (a bound of None: unbounded on that side).

    Integer HU (the wire's int16) with integral bounds is clipped before the conversion: half the
    bytes touched, and the same values as clipping the floats.
    """
    integral = all(b is None or (float(b).is_integer() and abs(b) < 2**15) for b in (lo, hi))
    if hu.dtype.kind in "iu" and integral:
        info = np.iinfo(hu.dtype)
        a = info.min if lo is None else max(int(lo), info.min)
        b = info.max if hi is None else min(int(hi), info.max)
        return np.clip(hu, a, b).astype(np.float32)
    return np.clip(hu.astype(np.float32), lo, hi)


def _windowed(
    hu: np.ndarray,
    lo: float | None,
    hi: float | None,
    offset: float,
    scale: float,
    size: Sequence[int],
    device: str | None = None,
    tensor: bool = False,
) -> Any:
    """``(clip(hu, lo, hi) - offset) / scale`` resized to ``size``; [N,1,h,w] float32.

    Resizing is linear with weights summing to one, so the affine part is applied after it, on the
    (4-16x smaller) model-sized slices: equal to windowing first up to float rounding (1e-7).
    With ``device`` (a torch device) all of it runs there, the HU copied over as is; only the model
    input comes back, or with ``tensor`` it stays there as a torch tensor.
    """
    if device is not None:  # the affine part too
        t = resize_on_device(on_device(hu, device).float().clamp(lo, hi)[:, None], size)
        t = (t - offset) / scale
        return t if tensor else t.cpu().numpy()
    y = resize_slices(_clipped(hu, lo, hi)[:, None], size)
    if offset:
        y -= np.float32(offset)
    y /= np.float32(scale)
    return y


def lung_input(hu: Any, record: LungRecord, *, device: str | None = None, tensor: bool = False) -> Any:
    """Jin et al. lung U-Net input: ``max(HU, hu_min) / divisor``, resized; [N,1,h,w] float32.

    ``device``: the torch device that windows and resizes (default: numpy and torch on the CPU);
    ``hu`` may then be a tensor already there (`on_device`), copied over once for all inputs, and
    with ``tensor`` the input is a torch tensor left there (for a model that takes it there).
    """
    lo, div = float(record.hu_min), float(record.divisor)
    size = record.input_size
    keep = tensor and device is not None
    return _model_input(
        hu.shape[0], size, lambda part: _windowed(hu[part], lo, None, 0.0, div, size, device, keep), keep
    )


def lesion_input(
    hu: Any,
    record: LesionRecord,
    rows: np.ndarray | None = None,
    *,
    device: str | None = None,
    tensor: bool = False,
) -> Any:
    """Lesion model input: lung window scaled to [0, 1], resized; [N,1,h,w] float32.

    ``rows`` picks slices of ``hu`` chunk by chunk, without copying the selected volume first.
    ``device``, ``tensor``: as for `lung_input`.
    """
    lo, hi = record.hu_window
    size = record.input_size
    take = np.arange(hu.shape[0]) if rows is None else np.asarray(rows)
    keep = tensor and device is not None
    return _model_input(
        take.size, size, lambda part: _windowed(hu[take[part]], lo, hi, lo, hi - lo, size, device, keep), keep
    )


def upsample_mask(
    prob: np.ndarray, out_hw: Sequence[int], threshold: float = 0.5, *, device: str | None = None
) -> np.ndarray:
    """Bilinear up-sampling of [N,h,w] (or [N,1,h,w]) probabilities onto the input grid, then
    ``> threshold``: bool [N,H,W], computed a few slices at a time. With ``device`` (a torch
    device) both run there and only the bool masks come back."""
    p = prob[:, 0] if prob.ndim == 4 else prob
    hw = (int(out_hw[0]), int(out_hw[1]))

    def one(part: slice) -> np.ndarray:
        if device is None:
            return _upsample_where_needed(p[part], hw, threshold)
        return upsample_on_device(p[part], hw, threshold, device).cpu().numpy()

    return _per_chunk(p.shape[0], hw, bool, one, size=_MASK_CHUNK if device is None else _CHUNK)


def bounding_box(mask: Any) -> tuple[slice, slice, slice] | None:
    """The smallest box (half-open slices per axis) holding every True voxel of bool [S,H,W]
    (an array, or a torch tensor: the box's bounds come back to the host)."""
    if isinstance(mask, np.ndarray):
        zs = np.flatnonzero(mask.any(axis=(1, 2)))
        if zs.size == 0:
            return None
        z = _span(zs)
        ys = np.flatnonzero(mask[z].any(axis=(0, 2)))  # rows and columns: of the slices holding any
        xs = np.flatnonzero(mask[z].any(axis=(0, 1)))
        return z, _span(ys), _span(xs)
    import torch

    extents = torch.cat([mask.flatten(1).any(dim=1), mask.any(dim=2).any(dim=0), mask.any(dim=1).any(dim=0)])
    zs, ys, xs = (np.flatnonzero(e) for e in np.split(extents.cpu().numpy(), np.cumsum(mask.shape[:2])))
    if zs.size == 0:
        return None
    return _span(zs), _span(ys), _span(xs)


def _span(where: np.ndarray) -> slice:
    """The half-open slice from the first to the last of ascending indices ``where``."""
    return slice(int(where[0]), int(where[-1]) + 1)


#: Below ``threshold - _MARGIN`` a probability cannot round up past the threshold when interpolated.
_MARGIN = 1e-6


def _upsample_where_needed(p: np.ndarray, hw: tuple[int, int], threshold: float) -> np.ndarray:
    """``resize_slices(p, hw, antialias=False) > threshold`` for [n,h,w] probabilities, with only
    the box of cells that can reach the threshold up-sampled.

    A bilinear value is a convex combination of its 2x2 source cells: where all four are below
    the threshold (by `_MARGIN`: float rounding) it is too. With ``hw`` an integer multiple of the
    model's grid, the up-sampled box (one cell wider on each side, whose edge pixels, clamped
    there, are below too) lands on the same source coordinates as in the whole slice: equal to
    up-sampling everything but for pixels within float rounding (1e-7) of the threshold. Lesions
    cover a few percent of a slice, lungs about half of it.
    """
    n, h, w = p.shape
    (big_h, big_w) = hw
    if big_h % h or big_w % w:  # not an integer zoom: the box would not land on the same pixels
        return resize_slices(p, hw, antialias=False) > threshold
    sy, sx = big_h // h, big_w // w
    out = np.zeros((n, big_h, big_w), bool)
    reach = bounding_box(p > threshold - _MARGIN)  # the cells that can reach the threshold
    if reach is None:
        return out
    _, rows, cols = reach
    y0, y1 = max(rows.start - 1, 0), min(rows.stop + 1, h)
    x0, x1 = max(cols.start - 1, 0), min(cols.stop + 1, w)
    box = resize_slices(p[:, y0:y1, x0:x1], ((y1 - y0) * sy, (x1 - x0) * sx), antialias=False)
    out[:, y0 * sy : y1 * sy, x0 * sx : x1 * sx] = box > threshold
    return out


def upsample_on_device(prob: Any, out_hw: Sequence[int], threshold: float, device: str) -> Any:
    """`upsample_mask` of [n,h,w] probabilities (an array, or a tensor already on ``device``) as a
    bool torch tensor [n,H,W] left on ``device``."""
    t = on_device(prob, device).float()[:, None]
    return _resize(t, out_hw, False, "bilinear")[:, 0] > threshold


def prob_to_mask(
    prob: np.ndarray,
    out_hw: Sequence[int],
    threshold: float = 0.5,
    *,
    out: np.ndarray | None = None,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """Up-sample per-slice probabilities onto the input grid and threshold; uint8 [N,H,W].

    With ``out`` (uint8 [S,H,W]) and ``rows`` (N slice indices) the masks are written straight
    into ``out[rows]`` chunk by chunk: no full-size temporary.
    """
    p = prob[:, 0] if prob.ndim == 4 else prob
    hw = (int(out_hw[0]), int(out_hw[1]))
    return _per_chunk(
        p.shape[0], hw, np.uint8, lambda part: upsample_mask(p[part], hw, threshold), out=out, rows=rows
    )
