"""Explaining a diagnosis: the classifier's attention on the slices that decided it.

The slice classifier (a ResNet: global average pooling, then one linear layer) returns with its
scores, when asked, its class activation maps: for that architecture the map of a class, through
a ReLU, *is* its Grad-CAM (the gradient of the class logit with respect to the last features is
the linear layer's weight spread evenly over the grid), so no backward pass is needed. But that
map has the last convolution's resolution (the input's / 32): Jin et al. show readers Guided
Grad-CAM, Grad-CAM times guided backpropagation, which has the input's. Guided backpropagation
needs autograd: `GuidedGradCam` runs it in the pipeline's process, with torch, on the classifier's
checkpoint, for the K explained slices only.

This module turns the maps of the top-K slices into what a reader looks at:

- the predicted class's attention on the input grid (`attention_on_grid`): the lung-box crop and
  the resize that built the classifier's input undone, scaled to 0-255 per slice;
- the binarised attention regions (`attention_regions`), by Jin et al.'s rule: the Grad-CAM map
  binarised, kept within a margin of the lung mask, regions of more than 200 pixels at the
  classifier's input resolution; each with its area and its overlap with the lesion mask.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from covidet._contract import AttentionRegion
from covidet.ensemble._preprocess import resize_slices

__all__ = [
    "ATTENTION_THRESHOLD",
    "LUNG_MARGIN_MM",
    "MIN_REGION_PX",
    "GuidedGradCam",
    "attention_on_grid",
    "attention_regions",
]

#: The binarisation threshold, as a fraction of the slice's strongest attention. Jin et al. do
#: not state theirs; half the peak is the usual choice for Grad-CAM localisation.
ATTENTION_THRESHOLD = 0.5
#: Jin et al.: "regions with valid size (>200 pixels ...)", counted at the classifier's input
#: resolution (their 224 x 224 slices), so the rule does not change with the scan's grid.
MIN_REGION_PX = 200
#: Jin et al. keep regions "within margin of lung mask": the margin we allow outside the lung
#: envelope, in mm (the pleura and a subpleural lesion's edge).
LUNG_MARGIN_MM = 5.0


def attention_on_grid(
    maps: np.ndarray, bbox: tuple[int, int, int, int], grid_hw: tuple[int, int]
) -> np.ndarray:
    """Attention maps of K slices ([K, h, w], one class each: class maps before their ReLU, or
    Guided Grad-CAM at the classifier's input size) as uint8 [K, H, W] on the input grid: ReLU
    (for class maps: Grad-CAM), resized bilinearly onto the lung box ``(row0, row1, col0, col1)``
    the classifier's input was cropped to (anti-aliased where it shrinks), 0 outside it, and
    scaled so that each slice's peak is 255 (a slice without positive attention stays 0)."""
    y0, y1, x0, x1 = bbox
    cam = np.maximum(np.asarray(maps, np.float32), 0.0)
    boxed = resize_slices(cam, (y1 - y0, x1 - x0), antialias=True)
    np.maximum(boxed, 0.0, out=boxed)  # bilinear stays within range; keep rounding from going below
    peak = boxed.reshape(len(boxed), -1).max(axis=1) if boxed.size else np.zeros(0, np.float32)
    scale = np.divide(255.0, peak, out=np.zeros_like(peak), where=peak > 0)
    out = np.zeros((len(boxed), *grid_hw), np.uint8)
    out[:, y0:y1, x0:x1] = np.clip(np.rint(boxed * scale[:, None, None]), 0, 255).astype(np.uint8)
    return out


def attention_regions(
    attention: np.ndarray,
    slices: Sequence[int],
    lung: np.ndarray,
    lesion: np.ndarray,
    spacing_rc: tuple[float, float],
    model_hw: tuple[int, int],
    bbox: tuple[int, int, int, int],
) -> list[AttentionRegion]:
    """Jin et al.'s attention regions of the explained slices.

    ``attention``: `attention_on_grid` [K,H,W]; ``lung`` / ``lesion``: those slices' masks on the
    input grid (bool [K,H,W]); ``spacing_rc``: pixel spacing in mm (rows, columns);
    ``model_hw``: the classifier's input size; ``bbox``: the lung box its input was cropped to.
    """
    from scipy import ndimage

    y0, y1, x0, x1 = bbox
    # the 200-pixel rule at the classifier's resolution, in input-grid pixels
    min_px = MIN_REGION_PX * (y1 - y0) * (x1 - x0) / (model_hw[0] * model_hw[1])
    margin = (
        max(1, round(LUNG_MARGIN_MM / spacing_rc[0])),
        max(1, round(LUNG_MARGIN_MM / spacing_rc[1])),
    )
    window = (2 * margin[0] + 1, 2 * margin[1] + 1)
    regions: list[AttentionRegion] = []
    for rank, (att, lung_k, lesion_k) in enumerate(zip(attention, lung, lesion, strict=True)):
        if not att.any():
            continue
        # the lung dilated by the margin: a rectangular maximum filter is separable, so it costs
        # two 1-D passes where a dilation with the full rectangle costs its area per pixel
        near_lung = ndimage.maximum_filter(lung_k.view(np.uint8), size=window) > 0
        binary = (att >= ATTENTION_THRESHOLD * 255) & near_lung
        binary = ndimage.binary_opening(binary, structure=np.ones((3, 3), bool))  # "morphological processing"
        labels, n = ndimage.label(binary)
        if n == 0:
            continue
        areas = np.bincount(labels.ravel(), minlength=n + 1)
        overlaps = np.bincount(labels.ravel(), weights=lesion_k.ravel(), minlength=n + 1)
        boxes = ndimage.find_objects(labels)
        for label in range(1, n + 1):
            area = int(areas[label])
            if area <= min_px:
                continue
            rows, cols = boxes[label - 1]
            ys, xs = np.nonzero(labels[rows, cols] == label)
            regions.append(
                AttentionRegion(
                    slice=int(slices[rank]),
                    rank=rank,
                    area_px=area,
                    area_mm2=area * spacing_rc[0] * spacing_rc[1],
                    lesion_overlap_px=int(overlaps[label]),
                    lesion_overlap=float(overlaps[label]) / area,
                    centroid=(float(ys.mean() + rows.start), float(xs.mean() + cols.start)),
                    bbox=(rows.start, rows.stop, cols.start, cols.stop),
                )
            )
    return regions


class GuidedGradCam:
    """Jin et al.'s Guided Grad-CAM of the slice classifier, with torch on its checkpoint.

    The checkpoint is loaded at the first call (a pipeline that is never asked to explain never
    holds it). Calls run the backward pass under a lock: one explanation at a time per pipeline
    instance, the other scans' work going on meanwhile (the pipeline awaits it in a thread).
    """

    def __init__(self, checkpoint: str, device: str | None = None) -> None:
        self.checkpoint = checkpoint
        self.device = device or "cpu"
        self._model: Any = None
        self._lock = threading.Lock()

    def __call__(self, x: Any, class_index: int) -> np.ndarray:
        """Guided Grad-CAM [K, h, w] of ``class_index`` for classifier inputs ``x`` [K, 3, h, w]
        (numpy, or a torch tensor on any device)."""
        import torch

        from covidet.models import guided_grad_cam

        with self._lock:
            model = self._load()
            t = torch.as_tensor(x, dtype=torch.float32).to(self.device)
            return np.asarray(guided_grad_cam(model, t, class_index).detach().float().cpu().numpy())

    def _load(self) -> Any:
        if self._model is None:
            from covidet.models import load_checkpoint, require_cam

            model, meta = load_checkpoint(self.checkpoint, map_location="cpu")
            require_cam(meta.architecture)
            self._model = model.to(self.device).eval()
        return self._model
