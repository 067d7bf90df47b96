"""Evaluation metrics shared by training, export checks and evaluation (numpy only)."""

from __future__ import annotations

import numpy as np

__all__ = ["bland_altman", "decision_statistics", "dice", "net_benefit", "volume_error"]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two masks (1.0 when both are empty)."""
    a, b = a > 0, b > 0
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def volume_error(predicted_ml: float, reference_ml: float) -> dict[str, float]:
    """Signed volume error of a segmentation: ``predicted - reference`` in mL and relative to the
    reference (NaN when the reference is empty)."""
    diff = float(predicted_ml) - float(reference_ml)
    rel = diff / float(reference_ml) if reference_ml > 0 else float("nan")
    return {"error_ml": diff, "relative_error": rel}


def bland_altman(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Bland–Altman agreement of paired measurements ``a`` (e.g. predicted) and ``b`` (reference):
    bias = mean(a - b), ``sd`` of the differences (n - 1), 95% limits of agreement bias ± 1.96 sd."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"bland_altman needs paired values, got {a.size} and {b.size}")
    nan = float("nan")
    if a.size == 0:
        return {"n": 0.0, "bias": nan, "sd": nan, "loa_low": nan, "loa_high": nan}
    d = a - b
    bias = float(d.mean())
    sd = float(d.std(ddof=1)) if d.size > 1 else nan
    return {
        "n": float(d.size),
        "bias": bias,
        "sd": sd,
        "loa_low": bias - 1.96 * sd,
        "loa_high": bias + 1.96 * sd,
    }


def decision_statistics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Binary decision statistics (1 = positive): counts, sensitivity, specificity, PPV, NPV, F1 and
    accuracy. A ratio whose denominator is 0 is NaN (e.g. PPV when nothing is called positive)."""
    y = np.asarray(y_true).reshape(-1) > 0
    p = np.asarray(y_pred).reshape(-1) > 0
    tp, fp = int((y & p).sum()), int((~y & p).sum())
    fn, tn = int((y & ~p).sum()), int((~y & ~p).sum())

    def ratio(num: int, den: int) -> float:
        return num / den if den else float("nan")

    return {
        "tp": float(tp),
        "fp": float(fp),
        "fn": float(fn),
        "tn": float(tn),
        "sensitivity": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "ppv": ratio(tp, tp + fp),
        "npv": ratio(tn, tn + fn),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy": ratio(tp + tn, tp + tn + fp + fn),
    }


def net_benefit(y_true: np.ndarray, score: np.ndarray, thresholds: np.ndarray) -> dict[str, np.ndarray]:
    """Decision curve analysis (Vickers & Elkin 2006): at each threshold probability ``pt`` the net
    benefit of treating the patients with ``score >= pt`` is ``TP/n - FP/n * pt / (1 - pt)``;
    also treating all (``treat_all``) and none (0)."""
    y = np.asarray(y_true).reshape(-1) > 0
    s = np.asarray(score, dtype=np.float64).reshape(-1)
    pt = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if np.any((pt <= 0) | (pt >= 1)):
        raise ValueError("threshold probabilities must lie strictly between 0 and 1")
    n = max(y.size, 1)
    called = s[None, :] >= pt[:, None]
    tp = (called & y[None, :]).sum(axis=1) / n
    fp = (called & ~y[None, :]).sum(axis=1) / n
    odds = pt / (1 - pt)
    prevalence = float(y.mean()) if y.size else 0.0
    return {
        "thresholds": pt,
        "model": tp - fp * odds,
        "treat_all": prevalence - (1 - prevalence) * odds,
        "treat_none": np.zeros_like(pt),
    }
