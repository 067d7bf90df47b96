"""Top-K fusion (Jin et al.), stepwise probability (CoviDet), volumes and Dice."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from covidet.ensemble._errors import ScanValidationError

__all__ = [
    "FusionResult",
    "LesionStats",
    "lesion_statistics",
    "stepwise_covid",
    "topk_fusion",
    "volume_ml",
    "voxels_ml",
]


@dataclass(frozen=True)
class FusionResult:
    class_probs: np.ndarray  # [4], sums to 1
    topk: np.ndarray  # [k] positions into the N classified slices


def topk_fusion(slice_probs: np.ndarray, k: int = 3) -> FusionResult:
    """Jin et al. task-specific fusion of per-slice 4-class probabilities [N, 4].

    Pneumonia classes (1..3): mean of the class's top-k slice probabilities (k = min(k, N));
    non-pneumonia (0): mean over all slices; then normalised to sum 1. ``topk`` = the k slices
    most probable for the predicted pneumonia class (argmax of the fused classes 1..3), by
    descending probability; with fewer than k slices the last one is repeated.
    """
    p = np.asarray(slice_probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] < 2:
        raise ValueError(f"slice_probs must be [N>=1, classes], got shape {p.shape}")
    kk = min(k, p.shape[0])
    top = -np.sort(-p[:, 1:], axis=0)[:kk]
    scores = np.concatenate([[p[:, 0].mean()], top.mean(axis=0)])
    probs = scores / scores.sum()
    cls = 1 + int(np.argmax(probs[1:]))
    order = np.argsort(-p[:, cls], kind="stable")[:kk]
    if kk < k:
        order = np.concatenate([order, np.full(k - kk, order[-1])])
    return FusionResult(class_probs=probs.astype(np.float32), topk=order.astype(np.int64))


def stepwise_covid(p_viral: float, p_covid_given_viral: float) -> float:
    """CoviDet stepwise P(COVID-19) = P(viral pneumonia) x P(COVID-19 | viral)."""
    for name, v in (("p_viral", p_viral), ("p_covid_given_viral", p_covid_given_viral)):
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{name} must be a probability in [0, 1], got {v}")
    return float(p_viral * p_covid_given_viral)


def _check_spacing(spacing: Sequence[float]) -> tuple[float, float, float]:
    if len(spacing) != 3:
        raise ScanValidationError(f"spacing must have 3 values (slice, row, column mm), got {spacing}")
    for axis, v in zip(("slice", "row", "column"), spacing, strict=True):
        if not (math.isfinite(v) and v > 0):
            raise ScanValidationError(f"{axis} spacing must be a finite positive number of mm, got {v}")
    return float(spacing[0]), float(spacing[1]), float(spacing[2])


def voxels_ml(count: int, spacing: Sequence[float]) -> float:
    """Volume of ``count`` voxels of the given spacing in mL (1 mL = 1000 mm^3)."""
    dz, dy, dx = _check_spacing(spacing)
    return float(count) * dz * dy * dx / 1000.0


def volume_ml(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Volume of the non-zero voxels in mL."""
    return voxels_ml(int(np.count_nonzero(mask)), spacing)


@dataclass(frozen=True)
class LesionStats:
    lung_ml: float
    lesion_ml: float
    ratio: float

    @classmethod
    def from_counts(cls, lung_voxels: int, lesion_voxels: int, spacing: Sequence[float]) -> LesionStats:
        """From voxel counts: lung (lesion included) and lesion inside the lung."""
        lung_ml, lesion_ml = voxels_ml(lung_voxels, spacing), voxels_ml(lesion_voxels, spacing)
        return cls(lung_ml, lesion_ml, lesion_ml / lung_ml if lung_ml > 0 else 0.0)


def lesion_statistics(
    lung_mask: np.ndarray, lesion_mask: np.ndarray, spacing: Sequence[float]
) -> LesionStats:
    """Lung and lesion volumes (lesion restricted to lung) and their ratio (0 without lung)."""
    lesion_voxels = sum(  # slabs of 16 slices: no full-size boolean temporaries
        int(np.count_nonzero((lesion_mask[z : z + 16] > 0) & (lung_mask[z : z + 16] > 0)))
        for z in range(0, lung_mask.shape[0], 16)
    )
    return LesionStats.from_counts(int(np.count_nonzero(lung_mask)), lesion_voxels, spacing)
