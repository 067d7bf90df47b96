"""Synthetic lesion-ratio courses (the four patterns of CoviDet Fig. 4) and the DL#5 evaluation.

Evaluation, as in the paper (DL#5 results): fit the GP on the first 3 time points and predict
the interval from the 3rd to the 4th and to the 5th time point "based on the lesion ratio
measured at those time points". Precisely: the predicted interval to point k is the first day
after the 3rd scan where the GP mean reaches the ratio observed at point k
(`CourseModel.crossing_days`), minus the 3rd scan day; when the mean does not reach that level
within the horizon (a GP extrapolates back towards the mean of its data, so this is common),
the day of its closest approach to the level is used instead and the course is counted as
"not reached". The actual interval is the true day difference. MAE in days is reported over all
courses and over the reached ones; the ratio error of the GP mean at the true 4th/5th days too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from covidet.progression._gpr import fit_course

__all__ = ["PATTERNS", "evaluate_progression", "generate_course", "true_course"]

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


def evaluate_progression(
    n: int = 200,
    seed: int = 0,
    *,
    horizon_days: float = 30.0,
    patterns: Sequence[str] = PATTERNS,
    n_restarts: int = 2,
) -> dict[str, dict[str, float]]:
    """Fit-on-3, predict-the-interval evaluation over ``n`` courses (patterns in turn).

    Returns per pattern (and ``"all"``): ``n``, and for k in (4, 5): ``mae_days_3to{k}`` (all
    courses), ``reached_3to{k}`` (fraction where the mean crosses the level),
    ``mae_days_reached_3to{k}`` (those only), ``pred_days_3to{k}`` and ``actual_days_3to{k}``
    (mean predicted and actual intervals), ``mae_ratio_{k}`` (GP mean vs observed ratio at the
    true day).
    """
    rows: dict[str, list[dict[str, float]]] = {p: [] for p in patterns}
    for i in range(n):
        pattern = patterns[i % len(patterns)]
        days, ratios = generate_course(pattern, seed * 1_000_003 + i, n_points=5)
        course = fit_course(days[:3], ratios[:3], seed=i, n_restarts=n_restarts)
        mean, _ = course.predict(days[3:5])
        grid = np.linspace(days[2], days[2] + horizon_days, int(horizon_days * 20) + 1)
        grid_mean, _ = course.predict(grid)
        rec: dict[str, float] = {}
        for k in (4, 5):
            level = float(ratios[k - 1])
            hit = course.crossing_days([level], horizon_days=horizon_days)[level]
            rec[f"crossed_{k}"] = float(hit is not None)
            if hit is None:  # closest approach of the mean to the level
                hit = float(grid[int(np.argmin(np.abs(grid_mean - level)))])
            rec[f"pred_{k}"] = hit - float(days[2])
            rec[f"actual_{k}"] = float(days[k - 1] - days[2])
            rec[f"ratio_err_{k}"] = abs(float(mean[k - 4]) - level)
        rows[pattern].append(rec)
    out = {p: _summary(r) for p, r in rows.items()}
    out["all"] = _summary([r for rs in rows.values() for r in rs])
    return out


def _summary(recs: list[dict[str, float]]) -> dict[str, float]:
    nan = float("nan")
    s: dict[str, float] = {"n": float(len(recs))}
    for k in (4, 5):
        pred = np.array([r[f"pred_{k}"] for r in recs])
        act = np.array([r[f"actual_{k}"] for r in recs])
        ok = np.array([r[f"crossed_{k}"] for r in recs]) > 0
        err = np.abs(pred - act)
        s[f"mae_days_3to{k}"] = float(err.mean()) if recs else nan
        s[f"reached_3to{k}"] = float(ok.mean()) if recs else nan
        s[f"mae_days_reached_3to{k}"] = float(err[ok].mean()) if ok.any() else nan
        s[f"pred_days_3to{k}"] = float(pred.mean()) if recs else nan
        s[f"actual_days_3to{k}"] = float(act.mean()) if recs else nan
        s[f"mae_ratio_{k}"] = float(np.mean([r[f"ratio_err_{k}"] for r in recs])) if recs else nan
    return s
