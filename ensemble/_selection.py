"""Lung-mask clean-up, Jin et al. slice selection and classifier input."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from scipy import ndimage

from covidet.ensemble._errors import NoLungError
from covidet.ensemble._preprocess import (
    bounding_box,
    on_device,
    resize_on_device,
    resize_slices,
    upsample_mask,
    upsample_on_device,
)
from covidet.preprocessing import SELECTION_RULES, SliceRecord

__all__ = [
    "ENVELOPE_CLOSING_MM",
    "MAX_HOLE_FRACTION",
    "FoldedLesions",
    "MaskSummary",
    "SliceSelection",
    "classifier_input",
    "clean_lung_mask",
    "closing_radius",
    "fold_lesions",
    "pick_slices",
    "select_slices",
]

#: In-plane closing of the lung envelope (mm): takes in a consolidation at the pleura that the lung
#: model left out as a notch, without bridging the two lungs across the mediastinum.
ENVELOPE_CLOSING_MM = 5.0

#: np.packbits' bit order (the first pixel is the most significant bit), for torch
_BITS = (128, 64, 32, 16, 8, 4, 2, 1)


def clean_lung_mask(
    mask: Any,
    *,
    keep: int = 2,
    min_fraction: float = 0.05,
    closing: int = 0,
    device: str | None = None,
) -> Any:
    """The lung envelope of a raw lung mask: the ``keep`` largest 3D components (each >=
    min_fraction of the largest), closed in-plane by a square of ``closing`` pixels' radius, with
    holes filled slice by slice (up to `MAX_HOLE_FRACTION` of the slice's lung): uint8 0/1
    [S,H,W] of a mask (bool, or nonzero = mask). With
    ``device`` (a torch device) it runs there (`covidet.ensemble._components`) on a bool tensor (or
    an array, copied over) and returns a bool tensor there: the same voxels.

    Holes (vessels, dense lesions inside the lung) are filled, so they count as lung; the closing
    takes in a consolidation at the pleura that the lung model left out as a notch in the lung's
    border. Everything outside the envelope is outside the lung: lesions are cut to it and the
    lung volume is its volume. All steps run on the mask's bounding box only (the same result:
    nothing outside it is mask, and all background outside it reaches the slice border).
    """
    if device is not None:
        return _clean_lung_on_device(mask, keep, min_fraction, closing, device)
    m = mask if mask.dtype == bool else mask > 0
    out = np.zeros(mask.shape, bool)
    box = bounding_box(m)
    if box is None:
        return out.view(np.uint8)
    labels, n = ndimage.label(m[box])
    wanted = np.zeros(n + 1, bool)
    wanted[_largest(np.bincount(labels.ravel())[1:], keep, min_fraction) + 1] = True
    kept = wanted[labels]
    inner = bounding_box(kept)  # the kept components' box, inside ``box``
    assert inner is not None  # the largest component is always kept
    kept[inner] = _fill_holes_per_slice(_close_in_plane(kept[inner], closing))
    out[box] = kept
    return out.view(np.uint8)  # 0/1, without a copy


def _close_in_plane(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary closing of each slice of bool [S,H,W] by a (2r+1)^2 square, as if the slices were
    surrounded by background. Pixels the closing adds outside the box are never mask (a closing
    stays within the mask's convex hull), so the box is enough."""
    if radius <= 0:
        return mask
    k = 2 * radius + 1
    pad = ((0, 0), (2 * radius, 2 * radius), (2 * radius, 2 * radius))
    m = np.pad(mask, pad)
    closed = ndimage.minimum_filter(ndimage.maximum_filter(m, size=(1, k, k)), size=(1, k, k))
    return closed[:, 2 * radius : -2 * radius, 2 * radius : -2 * radius]


def closing_radius(
    spacing: tuple[float, float, float],
    grid_hw: tuple[int, int],
    model_hw: tuple[int, int],
    mm: float = ENVELOPE_CLOSING_MM,
) -> int:
    """The envelope closing's radius in pixels of the lung model's grid (``model_hw``) for a scan
    of ``spacing`` (mm: slice, row, column) on ``grid_hw``."""
    pixel_mm = (spacing[1] * grid_hw[0] / model_hw[0] + spacing[2] * grid_hw[1] / model_hw[1]) / 2
    return round(mm / pixel_mm)


def _largest(sizes: np.ndarray, keep: int, min_fraction: float) -> np.ndarray:
    """Positions in ``sizes`` (component sizes in label order) of the ``keep`` largest components
    of at least ``min_fraction`` of the largest one's size."""
    order = np.argsort(sizes)[::-1][:keep]
    return order[sizes[order] >= min_fraction * sizes[order[0]]]


def _clean_lung_on_device(mask: Any, keep: int, min_fraction: float, closing: int, device: str) -> Any:
    """`clean_lung_mask` in torch on ``device``: the same components, holes and result."""
    import torch

    from covidet.ensemble._components import component_labels, component_sizes

    m = on_device(mask, device)
    m = m if m.dtype == torch.bool else m > 0
    out = torch.zeros(m.shape, dtype=torch.bool, device=m.device)
    box = bounding_box(m)
    if box is None:
        return out
    sub = m[box].contiguous()
    labels = component_labels(sub)
    firsts, sizes = component_sizes(labels, sub.numel())
    chosen = _largest(sizes.cpu().numpy(), keep, min_fraction)
    kept = torch.isin(labels, firsts[torch.from_numpy(chosen).to(firsts.device)])
    inner = bounding_box(kept)
    assert inner is not None  # the largest component is always kept
    k = _close_in_plane_on_device(kept[inner], closing).contiguous()
    # holes: background not connected (4-connected, in its slice) to the border of the slice,
    # unless larger than MAX_HOLE_FRACTION of its slice's lung (labels are a component's first
    # flat index, so its slice is label // (H*W))
    background = component_labels(~k, dims=(1, 2))
    edges = torch.cat([background[:, 0], background[:, -1], background[:, :, 0], background[:, :, -1]], 1)
    n, hw = k.numel(), k.shape[1] * k.shape[2]
    stays = torch.zeros(n + 1, dtype=torch.bool, device=k.device)
    stays[edges.reshape(-1)] = True
    sizes = torch.bincount(background.reshape(-1), minlength=n + 1)
    slice_of = torch.clamp(torch.arange(n + 1, device=k.device) // hw, max=k.shape[0] - 1)
    area = k.reshape(k.shape[0], -1).sum(dim=1)
    stays |= sizes * MAX_HOLE_FRACTION.denominator > area[slice_of] * MAX_HOLE_FRACTION.numerator
    stays[-1] = False  # the label of the mask itself
    kept[inner] = ~stays[background]
    out[box] = kept
    return out


def _close_in_plane_on_device(mask: Any, radius: int) -> Any:
    """`_close_in_plane` in torch: max-pooling dilates, max-pooling the complement erodes."""
    if radius <= 0:
        return mask
    import torch.nn.functional as F

    k, p = 2 * radius + 1, 2 * radius
    m = F.pad(mask[:, None].float(), (p, p, p, p))
    dilated = F.max_pool2d(m, k, stride=1, padding=radius)
    closed = -F.max_pool2d(-dilated, k, stride=1, padding=radius)
    return closed[:, 0, p:-p, p:-p] > 0.5


#: 4-connectivity within a slice, none across slices (as `ndimage.binary_fill_holes` per slice).
_IN_PLANE = np.zeros((3, 3, 3), bool)
_IN_PLANE[1] = ndimage.generate_binary_structure(2, 1)


#: A hole is filled only up to this fraction of its slice's lung area (a Fraction: compared in
#: integers, so that the numpy and torch paths agree exactly). Vessels and dense lesions inside the
#: lung are small next to it. Larger holes are not lung: where the two lungs meet in front of and
#: behind the heart, the mediastinum becomes a hole of the slice's mask; at the bases the lung can
#: ring the diaphragm's dome.
MAX_HOLE_FRACTION = Fraction(1, 10)


def _fill_holes_per_slice(mask: np.ndarray) -> np.ndarray:
    """``binary_fill_holes`` of every slice of bool [S,H,W], in one labelling of the background,
    but for holes larger than `MAX_HOLE_FRACTION` of their slice's mask.

    A hole is background not connected (4-connected, in its slice) to the slice's border; one 3D
    labelling with no connectivity across slices finds them all at once (faster than a call per
    slice).
    """
    background, n = ndimage.label(~mask, structure=_IN_PLANE)
    edges = (background[:, 0], background[:, -1], background[:, :, 0], background[:, :, -1])
    stays = np.zeros(n + 1, bool)
    stays[np.concatenate([e.ravel() for e in edges])] = True
    sizes = np.bincount(background.ravel(), minlength=n + 1)
    slice_of = np.zeros(n + 1, np.int64)
    slice_of[background] = np.arange(mask.shape[0])[:, None, None]  # a label lies in one slice
    area = np.count_nonzero(mask.reshape(mask.shape[0], -1), axis=1)
    stays |= sizes * MAX_HOLE_FRACTION.denominator > area[slice_of] * MAX_HOLE_FRACTION.numerator
    stays[0] = False  # label 0: the mask itself
    return ~stays[background]


@dataclass(frozen=True)
class SliceSelection:
    """Selected input slice indices (ascending) and the lung's 3D bounding box (half-open)."""

    indices: np.ndarray
    bbox: tuple[int, int, int, int, int, int]
    n_valid: int


@dataclass
class MaskSummary:
    """A [S,H,W] lung mask as the pipeline keeps it: per-slice pixel counts, which rows and
    columns hold lung anywhere (for slice selection), and the mask itself packed to one bit per
    voxel (9.8 MB for 300 x 512 x 512). Built slab by slab (`add`), so the full-size mask never
    has to exist at once; `masks` unpacks the slices asked for (much cheaper than up-sampling
    them again)."""

    counts: np.ndarray  #: int64 [S], mask pixels per slice
    rows: np.ndarray  #: bool [H], rows with mask pixels in any slice
    cols: np.ndarray  #: bool [W], columns with mask pixels in any slice
    packed: np.ndarray  #: uint8 [S, ceil(H*W/8)], each slice's mask, `np.packbits` of its pixels

    @classmethod
    def empty(cls, shape: tuple[int, int, int]) -> MaskSummary:
        s, h, w = shape
        packed = np.zeros((s, (h * w + 7) // 8), np.uint8)
        return cls(np.zeros(s, np.int64), np.zeros(h, bool), np.zeros(w, bool), packed)

    @classmethod
    def of(cls, mask: np.ndarray) -> MaskSummary:
        s, h, w = mask.shape
        summary = cls.empty((s, h, w))
        summary.add(np.arange(s), mask)
        return summary

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.counts.size, self.rows.size, self.cols.size)

    def add(self, slices: np.ndarray | slice, mask: np.ndarray) -> None:
        """Record ``mask`` ([n,H,W]) as the mask of ``slices`` (n slice indices)."""
        m = mask if mask.dtype == bool else mask > 0
        flat = m.reshape(m.shape[0], -1)
        self.counts[slices] = np.count_nonzero(flat, axis=1)
        self.rows |= m.any(axis=(0, 2))
        self.cols |= m.any(axis=(0, 1))
        self.packed[slices] = np.packbits(flat, axis=1)

    def masks(self, slices: np.ndarray | slice, *, device: str | None = None) -> Any:
        """The masks of ``slices``: bool [n,H,W] (empty for slices never added). With ``device``
        a bool torch tensor there: the packed bits are copied over and unpacked there."""
        _, h, w = self.shape
        if device is None:
            bits = np.unpackbits(self.packed[slices], axis=1, count=h * w)
            return bits.view(bool).reshape(-1, h, w)
        packed = on_device(self.packed[slices], device)
        unpacked = (packed[:, :, None] & _bit_weights(packed.device)) != 0
        return unpacked.reshape(packed.shape[0], -1)[:, : h * w].reshape(-1, h, w)

    def add_probabilities(
        self, slices: np.ndarray, prob: Any, *, threshold: float = 0.5, device: str | None = None
    ) -> None:
        """Record the masks of model-resolution probabilities ``prob`` ([n,h,w]; with ``device``
        an array, or a tensor there) up-sampled onto the grid and thresholded. With ``device``
        the masks are made, counted and packed there:
        only the counts and the packed bits (1/8 of the pixels) come back."""
        _, h, w = self.shape
        if device is None:
            self.add(slices, upsample_mask(prob, (h, w), threshold))
            return
        import torch

        m = upsample_on_device(prob, (h, w), threshold, device)
        self.counts[slices] = m.sum(dim=(1, 2)).cpu().numpy()
        self.rows |= m.any(dim=2).any(dim=0).cpu().numpy()
        self.cols |= m.any(dim=1).any(dim=0).cpu().numpy()
        flat = torch.nn.functional.pad(m.reshape(m.shape[0], -1), (0, self.packed.shape[1] * 8 - h * w))
        bits = flat.view(m.shape[0], -1, 8).to(torch.uint8) * _bit_weights(m.device)
        self.packed[slices] = bits.sum(dim=2, dtype=torch.uint8).cpu().numpy()


def _bit_weights(device: Any) -> Any:
    """np.packbits' bit weights as a uint8 torch tensor on ``device``."""
    import torch

    return torch.tensor(_BITS, dtype=torch.uint8, device=device)


def fold_lesions(
    summary: MaskSummary,
    rows: np.ndarray,
    prob: np.ndarray,
    hu: Any,
    *,
    want_masks: bool = False,
    device: str | None = None,
) -> FoldedLesions:
    """One chunk of lesion probabilities ([n,h,w] for slices ``rows``) onto the grid, cut to the
    lung envelope that ``summary`` holds: a lesion is always inside the lung, and nothing outside
    the envelope is ever added to it. ``hu`` is the scan (array, or its tensor on ``device``): the
    HU of the lung voxels are summed for the quality checks. With ``device`` all of it runs there;
    the masks come back only when asked for.
    """
    _, h, w = summary.shape
    if device is None:
        lesion = upsample_mask(prob, (h, w))
        lung = summary.masks(rows)
        lesion &= lung
        n_lung, n_lesion = int(np.count_nonzero(lung)), int(np.count_nonzero(lesion))
        hu_sum = float(hu[rows][lung].sum(dtype=np.float64))
        if not want_masks:
            return FoldedLesions(n_lung, n_lesion, hu_sum)
        return FoldedLesions(n_lung, n_lesion, hu_sum, lung, lesion)
    import torch

    lung_t = summary.masks(rows, device=device)
    lesion_t = upsample_on_device(prob, (h, w), 0.5, device) & lung_t
    rows_t = torch.as_tensor(rows, device=lung_t.device)
    hu_t = on_device(hu, device)[rows_t]
    hu_sum = float(hu_t[lung_t].sum(dtype=torch.float64))
    n_lung, n_lesion = int(lung_t.sum()), int(lesion_t.sum())
    if not want_masks:
        return FoldedLesions(n_lung, n_lesion, hu_sum)
    return FoldedLesions(n_lung, n_lesion, hu_sum, lung_t.cpu().numpy(), lesion_t.cpu().numpy())


@dataclass(frozen=True)
class FoldedLesions:
    """`fold_lesions` of one chunk: lung and lesion voxels, the HU sum over the lung voxels, and
    the bool [n,H,W] masks when they were asked for."""

    n_lung: int
    n_lesion: int
    lung_hu_sum: float
    lung: np.ndarray | None = None
    lesion: np.ndarray | None = None


def pick_slices(valid: np.ndarray, n: int, rule: str) -> np.ndarray:
    """``n`` of the ``valid`` slice indices (ascending) by ``rule`` (one of `SELECTION_RULES`: ``even``
    spreads them from the first valid slice to the last, ``jin_stride`` is Jin et al.'s rule)."""
    if rule == "jin_stride":
        return valid[0 :: max(valid.size // n, 1)][:n]
    if rule == "even":
        if valid.size <= n:
            return valid
        return valid[np.round(np.linspace(0, valid.size - 1, n)).astype(np.int64)]
    raise KeyError(f"unknown slice selection rule {rule!r}; valid: {', '.join(SELECTION_RULES)}")


def select_slices(lung_mask: np.ndarray | MaskSummary, record: SliceRecord) -> SliceSelection:
    """Jin et al.: slices with more than `min_lung_pixels` lung pixels, `n_slices` of them, picked
    by the record's ``selection`` rule (`covidet.preprocessing.SELECTION_RULES`).

    The pixel threshold is defined at 512x512 (``reference_pixels``) and scaled by the in-plane
    area for other sizes. ``lung_mask`` is the [S,H,W] mask or its `MaskSummary`.
    """
    summary = lung_mask if isinstance(lung_mask, MaskSummary) else MaskSummary.of(lung_mask)
    _, h, w = summary.shape
    counts = summary.counts
    threshold = float(record.min_lung_pixels) * (h * w) / float(record.reference_pixels)
    valid = np.flatnonzero(counts > threshold)
    if valid.size == 0:
        raise NoLungError(
            "no lung found in the scan: no slice has more than "
            f"{threshold:.0f} lung pixels (of {h}x{w}); check that the volume is a chest CT in "
            "Hounsfield units (air = -1000) with slices along the first axis"
        )
    indices = pick_slices(valid, record.n_slices, record.selection)
    indices = indices.astype(np.int64)
    zs = np.flatnonzero(counts > 0)
    ys = np.flatnonzero(summary.rows)
    xs = np.flatnonzero(summary.cols)
    bbox = (int(zs[0]), int(zs[-1]) + 1, int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1)
    return SliceSelection(indices=indices, bbox=bbox, n_valid=int(valid.size))


def classifier_input(
    hu: Any,
    masks: Any,
    selection: SliceSelection,
    record: SliceRecord,
    *,
    device: str | None = None,
    tensor: bool = False,
) -> Any:
    """Jin et al. 3-channel slices (mask*255, mask*slice, slice) cropped to the lung box, /255.

    ``masks`` are the lung masks of the selected slices only ([N,H,W], N = len(selection.indices),
    e.g. ``lung_mask[selection.indices]``). slice = clip(HU, lo, hi) * 255 / (hi - lo), minus the
    slice minimum, to uint8. Returns float32 [N, 3, h, w]. With ``device`` (a torch device) it is
    computed there; ``hu`` and ``masks`` may then be tensors already there, and with ``tensor``
    the result is a torch tensor left there.
    """
    lo, hi = record.hu_window
    _, _, y0, y1, x0, x1 = selection.bbox
    idx = selection.indices
    if masks.shape[0] != len(idx):
        raise ValueError(f"need the masks of the {len(idx)} selected slices, got {masks.shape[0]}")
    if device is not None:
        out = _classifier_input_on_device(hu, masks, selection, record, device)
        return out if tensor else out.cpu().numpy()
    s = np.clip(hu[idx, y0:y1, x0:x1].astype(np.float32), lo, hi) * (255.0 / (hi - lo))
    s -= s.reshape(len(idx), -1).min(axis=1)[:, None, None]
    s8 = np.clip(s, 0, 255).astype(np.uint8)
    m = (masks[:, y0:y1, x0:x1] > 0).astype(np.uint8)
    channels = np.stack([m * np.uint8(255), m * s8, s8], axis=1).astype(np.float32)
    return resize_slices(channels, record.input_size) / np.float32(255.0)


def _classifier_input_on_device(
    hu: Any, masks: Any, selection: SliceSelection, record: SliceRecord, device: str
) -> Any:
    """`classifier_input` in torch on ``device``, the same operations in the same order; the
    tensor is left there."""
    import torch

    lo, hi = record.hu_window
    _, _, y0, y1, x0, x1 = selection.bbox
    t = on_device(hu, device)
    rows = torch.as_tensor(selection.indices, device=t.device)
    s = t[rows, y0:y1, x0:x1].float().clamp(lo, hi) * (255.0 / (hi - lo))
    s -= s.reshape(s.shape[0], -1).amin(dim=1)[:, None, None]
    s8 = s.clamp(0, 255).to(torch.uint8)
    m = (on_device(masks, device)[:, y0:y1, x0:x1] > 0).to(torch.uint8)
    channels = torch.stack([m * 255, m * s8, s8], dim=1).float()
    return resize_on_device(channels, record.input_size) / 255.0
