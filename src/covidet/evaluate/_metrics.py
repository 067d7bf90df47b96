"""Classification metrics with bootstrap confidence intervals (scikit-learn for all it has).

Every figure comes as ``{"value", "ci_low", "ci_high"}``: the value on the whole set and the 2.5th
and 97.5th percentiles over ``n_boot`` stratified bootstrap resamples (each class resampled with
replacement within itself, so every resample keeps the class counts; seeded, so a report is
reproducible). What scikit-learn lacks — decision statistics as a set, net benefit,
Bland–Altman — is in `covidet.metrics`.

The values and curves come from scikit-learn. Inside the bootstrap, AUC and average precision are
computed by `rank_auc` and `step_average_precision`, the same definitions in plain numpy (equal to
``roc_auc_score`` / ``average_precision_score`` to rounding, ties included; tested): scikit-learn's
input validation costs about 10 ms a call, which made 1000 resamples of a dozen tasks take minutes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from covidet.metrics import decision_statistics, net_benefit

__all__ = [
    "DECISION_KEYS",
    "binary_task",
    "bootstrap",
    "estimate",
    "multiclass_summary",
    "rank_auc",
    "step_average_precision",
    "stratified_resamples",
    "youden_cutoff",
]

#: The decision statistics reported at each operating point.
DECISION_KEYS: tuple[str, ...] = ("sensitivity", "specificity", "ppv", "npv", "f1", "accuracy")
#: Threshold probabilities of the decision curves.
DCA_THRESHOLDS = np.round(np.arange(0.01, 1.0, 0.01), 2)


def estimate(value: float, samples: np.ndarray | None = None, alpha: float = 0.05) -> dict[str, float]:
    """``{"value", "ci_low", "ci_high"}``; the interval is NaN without (finite) samples."""
    nan = float("nan")
    low = high = nan
    if samples is not None:
        finite = np.asarray(samples, dtype=np.float64)
        finite = finite[np.isfinite(finite)]
        if finite.size:
            low = float(np.percentile(finite, 100 * alpha / 2))
            high = float(np.percentile(finite, 100 * (1 - alpha / 2)))
    return {"value": float(value), "ci_low": low, "ci_high": high}


def stratified_resamples(y: np.ndarray, n_boot: int, seed: int) -> list[np.ndarray]:
    """``n_boot`` index arrays, each resampling every class of ``y`` within itself."""
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(y == c) for c in np.unique(y)]
    return [np.concatenate([rng.choice(g, size=g.size, replace=True) for g in groups]) for _ in range(n_boot)]


def bootstrap(
    stat: Callable[[np.ndarray], Mapping[str, float]], y: np.ndarray, n_boot: int, seed: int
) -> dict[str, dict[str, float]]:
    """``stat(indices) -> {name: value}`` on all samples, with a stratified bootstrap CI for each."""
    full = dict(stat(np.arange(y.size)))
    if n_boot <= 0:
        return {k: estimate(v) for k, v in full.items()}
    runs = [stat(idx) for idx in stratified_resamples(y, n_boot, seed)]
    return {k: estimate(v, np.array([r[k] for r in runs], dtype=np.float64)) for k, v in full.items()}


def rank_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC as the Mann–Whitney statistic with mid-ranks for ties (= ``roc_auc_score``)."""
    pos = np.asarray(y).reshape(-1) > 0
    s = np.asarray(score, dtype=np.float64).reshape(-1)
    n1 = int(pos.sum())
    n0 = pos.size - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ordered = np.sort(s)
    ranks = (np.searchsorted(ordered, s, "left") + np.searchsorted(ordered, s, "right") + 1) / 2.0
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def step_average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """Average precision, sum over score thresholds of (R_k - R_k-1) P_k (= ``average_precision_score``)."""
    pos = (np.asarray(y).reshape(-1) > 0).astype(np.float64)
    s = np.asarray(score, dtype=np.float64).reshape(-1)
    order = np.argsort(-s, kind="mergesort")
    ys, ss = pos[order], s[order]
    last = np.r_[np.flatnonzero(np.diff(ss)), ys.size - 1]  # last index of each distinct score
    tp = np.cumsum(ys)[last]
    if tp.size == 0 or tp[-1] == 0:
        return float("nan")
    precision = tp / (last + 1)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def youden_cutoff(y: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """The score cut-off maximising Youden's J = sensitivity + specificity - 1 (the highest such
    cut-off on ties) and J there; positive means ``score >= cut-off``."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(y, score)
    j = tpr - fpr
    i = int(np.argmax(j))
    cut = float(thr[i]) if np.isfinite(thr[i]) else float(np.max(score)) + 1e-12
    return cut, float(j[i])


def _decision(prefix: str, y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    s = decision_statistics(y, pred)
    return {f"{prefix}{k}": s[k] for k in DECISION_KEYS}


def binary_task(
    name: str,
    y: np.ndarray,
    score: np.ndarray,
    *,
    operating: Mapping[str, np.ndarray] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    curves: bool = True,
) -> dict[str, Any]:
    """ROC AUC, average precision, Brier score, and decision statistics at each operating point
    (``operating``: rule name -> the rule's positive calls) and at Youden's J, each with its CI;
    with ``curves`` the ROC, PR, reliability (10 uniform bins) and decision curves too.

    ``y``: 1 = positive; ``score``: the positive class's probability. A task without both classes
    has counts and a ``note`` only.
    """
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import (
        average_precision_score,
        brier_score_loss,
        precision_recall_curve,
        roc_auc_score,
        roc_curve,
    )

    y = (np.asarray(y).reshape(-1) > 0).astype(np.int64)
    s = np.asarray(score, dtype=np.float64).reshape(-1)
    out: dict[str, Any] = {"name": name, "n": int(y.size), "n_pos": int(y.sum()), "n_neg": int((1 - y).sum())}
    if y.size == 0 or y.min() == y.max():
        out["note"] = "needs positive and negative scans"
        return out
    ops = {k: np.asarray(v).reshape(-1) > 0 for k, v in (operating or {}).items()}
    cut, j = youden_cutoff(y, s)
    youden_pred = s >= cut

    clipped = np.clip(s, 0.0, 1.0)

    def stat(idx: np.ndarray) -> dict[str, float]:
        yi, si = y[idx], s[idx]
        r = {
            "auc": rank_auc(yi, si),
            "average_precision": step_average_precision(yi, si),
            "brier": float(np.mean((clipped[idx] - yi) ** 2)),
        }
        for rule, pred in ops.items():
            r.update(_decision(f"{rule}.", yi, pred[idx]))
        r.update(_decision("youden.", yi, youden_pred[idx]))
        return r

    figures = bootstrap(stat, y, n_boot, seed)
    # the values from scikit-learn itself
    figures["auc"]["value"] = float(roc_auc_score(y, s))
    figures["average_precision"]["value"] = float(average_precision_score(y, s))
    figures["brier"]["value"] = float(brier_score_loss(y, clipped))
    out["auc"] = figures.pop("auc")
    out["average_precision"] = figures.pop("average_precision")
    out["brier"] = figures.pop("brier")
    out["operating_points"] = {
        rule: {k: figures[f"{rule}.{k}"] for k in DECISION_KEYS} | {"counts": _counts(y, ops[rule])}
        for rule in ops
    }
    out["youden"] = {"cutoff": cut, "j": j} | {k: figures[f"youden.{k}"] for k in DECISION_KEYS}
    out["youden"]["counts"] = _counts(y, youden_pred)
    if curves:
        fpr, tpr, thr = roc_curve(y, s)
        prec, rec, _ = precision_recall_curve(y, s)
        prob_true, prob_pred = calibration_curve(y, np.clip(s, 0.0, 1.0), n_bins=10, strategy="uniform")
        dca = net_benefit(y, s, DCA_THRESHOLDS)
        out["curves"] = {
            "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": _finite(thr)},
            "pr": {"precision": prec.tolist(), "recall": rec.tolist(), "prevalence": float(y.mean())},
            "calibration": {"observed": prob_true.tolist(), "predicted": prob_pred.tolist()},
            "decision": {k: np.asarray(v).tolist() for k, v in dca.items()},
        }
    return out


def _counts(y: np.ndarray, pred: np.ndarray) -> dict[str, int]:
    s = decision_statistics(y, pred)
    return {k: int(s[k]) for k in ("tp", "fp", "fn", "tn")}


def _finite(a: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in a]


def multiclass_summary(
    y: np.ndarray, probs: np.ndarray, class_names: tuple[str, ...], *, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """The whole classifier: macro one-vs-rest AUC, Hand & Till's one-vs-one (multi-way) AUC and
    the accuracy of the arg-max class, each with its CI; the arg-max confusion matrix (rows =
    true class, columns = predicted, in ``class_names`` order)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, roc_auc_score

    y = np.asarray(y, dtype=np.int64).reshape(-1)
    p = np.asarray(probs, dtype=np.float64)
    labels = list(range(len(class_names)))
    pred = p.argmax(axis=1) if p.size else np.zeros(0, np.int64)
    out: dict[str, Any] = {
        "n": int(y.size),
        "confusion_matrix": {
            "labels": list(class_names),
            "matrix": confusion_matrix(y, pred, labels=labels).tolist() if y.size else [],
        },
    }
    if set(np.unique(y).tolist()) != set(labels):
        out["note"] = "the AUCs need scans of every class"
        out["accuracy"] = estimate(float(accuracy_score(y, pred)) if y.size else float("nan"))
        return out
    # rows renormalised: roc_auc_score's multi-class mode needs probabilities summing to 1
    pn = p / np.clip(p.sum(axis=1, keepdims=True), 1e-12, None)

    pairs = [(a, b) for a in labels for b in labels if a < b]

    def stat(idx: np.ndarray) -> dict[str, float]:
        yi, pi = y[idx], pn[idx]
        ovo = []
        for a, b in pairs:  # Hand & Till: both directions of each pair, on that pair's scans
            m = (yi == a) | (yi == b)
            ovo.append((rank_auc(yi[m] == a, pi[m, a]) + rank_auc(yi[m] == b, pi[m, b])) / 2)
        return {
            "macro_auc_ovr": float(np.mean([rank_auc(yi == c, pi[:, c]) for c in labels])),
            "multiway_auc_ovo": float(np.mean(ovo)),
            "accuracy": float(np.mean(yi == pred[idx])),
        }

    figures = bootstrap(stat, y, n_boot, seed)
    # the values from scikit-learn itself
    for key, mode in (("macro_auc_ovr", "ovr"), ("multiway_auc_ovo", "ovo")):
        figures[key]["value"] = float(roc_auc_score(y, pn, multi_class=mode, average="macro", labels=labels))
    figures["accuracy"]["value"] = float(accuracy_score(y, pred))
    out.update(figures)
    return out
