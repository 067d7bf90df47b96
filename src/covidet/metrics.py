"""Evaluation metrics shared by training, export checks and evaluation (numpy only)."""

from __future__ import annotations

import numpy as np

__all__ = ["dice"]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two masks (1.0 when both are empty)."""
    a, b = a > 0, b > 0
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total
