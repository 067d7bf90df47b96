"""Synthetic lesion-ratio courses: the four patterns of CoviDet Fig. 4, scanned on irregular days.

The DL#5 evaluation over them is in `covidet.progression._evaluate`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["PATTERNS", "generate_course", "generated_truth", "true_course"]

PATTERNS: tuple[str, ...] = ("peak_recovery", "relapse", "plateau", "deterioration")


def _peak(t: np.ndarray, amp: float, tp: float) -> np.ndarray:
    s = np.maximum(t, 0.0) / tp
    return np.asarray(amp * s * np.exp(1.0 - s))


def true_course(pattern: str, rng: np.random.Generator) -> Any:
    """A random noise-free lesion-ratio function of the day for ``pattern``."""
    if pattern == "peak_recovery":
        amp, tp = rng.uniform(0.15, 0.45), rng.uniform(5.0, 10.0)
        return lambda t: _peak(t + 1.0, amp, tp)
    if pattern == "relapse":
        a1, tp1 = rng.uniform(0.15, 0.35), rng.uniform(3.0, 6.0)
        a2, t2, w = a1 * rng.uniform(0.6, 1.1), tp1 + rng.uniform(9.0, 14.0), rng.uniform(3.0, 5.0)
        return lambda t: _peak(t + 1.0, a1, tp1) + a2 * np.exp(-((t - t2) ** 2) / (2 * w * w))
    if pattern == "plateau":
        level, tau = rng.uniform(0.1, 0.4), rng.uniform(1.5, 4.0)
        return lambda t: level * (1.0 - np.exp(-(np.asarray(t) + 1.0) / tau))
    if pattern == "deterioration":
        t50, s = rng.uniform(12.0, 25.0), rng.uniform(4.0, 7.0)
        return lambda t: 0.9 / (1.0 + np.exp(-(np.asarray(t) - t50) / s))
    raise ValueError(f"unknown course pattern {pattern!r}; expected one of {PATTERNS}")


def generated_truth(pattern: str, seed: int) -> Any:
    """The noise-free course behind ``generate_course(pattern, seed, ...)`` (same random draws)."""
    return true_course(pattern, np.random.default_rng(seed))


def generate_course(pattern: str, seed: int, n_points: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """One noisy course: ``(days, ratios)`` at irregular scan days (first scan on day 0-2).

    Gaps between scans are 2 + Gamma(2, 1.3) days rounded to whole days (mean ~4.6 days, as the
    paper's 3rd->4th interval); noise N(0, (0.01 + 0.05 * ratio)^2), ratios clipped to [0, 1].
    """
    if n_points < 1:
        raise ValueError(f"n_points must be >= 1, got {n_points}")
    rng = np.random.default_rng(seed)
    f = true_course(pattern, rng)
    gaps = np.round(2.0 + rng.gamma(2.0, 1.3, n_points - 1))
    days = np.concatenate([[float(rng.integers(0, 3))], gaps]).cumsum()
    clean = f(days)
    ratios = np.clip(clean + rng.normal(0.0, 1.0, n_points) * (0.01 + 0.05 * clean), 0.0, 1.0)
    return days, ratios
