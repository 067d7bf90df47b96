"""Training the DL#3 clinical SVM and its fusion with scikit-learn (`train_svm`), and copying a
fitted scikit-learn model into the runtime `ClinicalSVM` (`from_sklearn`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from covidet.clinical._schema import CLINICAL_SCHEMA, N_FEATURES, ClinicalDataError, validate_features
from covidet.clinical._svm import KERNELS, ClinicalSVM, Fusion, _logit

__all__ = ["GRIDS", "from_sklearn", "train_svm"]

#: Cross-validated grids (features are standardized first).
GRIDS: dict[str, dict[str, list[Any]]] = {
    "linear": {"C": [0.01, 0.1, 1.0, 10.0]},
    "poly": {"C": [0.1, 1.0, 10.0], "gamma": [0.02, 0.07], "degree": [2, 3], "coef0": [1.0]},
    "rbf": {"C": [0.3, 1.0, 3.0, 10.0], "gamma": [0.01, 0.03, 0.1]},
}


def _pipeline(kernel: str, seed: int, **params: Any) -> Any:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    svc = SVC(kernel=kernel, random_state=seed, **params)
    return Pipeline([("scaler", StandardScaler()), ("svc", svc)])


def _calibrated(kernel: str, seed: int, cv: Any, **params: Any) -> Any:
    from sklearn.calibration import CalibratedClassifierCV

    return CalibratedClassifierCV(_pipeline(kernel, seed, **params), method="sigmoid", cv=cv, ensemble=False)


def train_svm(
    x: np.ndarray,
    y: np.ndarray,
    *,
    seed: int,
    p_dl2: np.ndarray,
    kernels: Sequence[str] = KERNELS,
    folds: int = 5,
    provenance: str = "",
) -> ClinicalSVM:
    """Fit the DL#3 SVM and fusion: cross-validated grid per kernel, best by CV AUC.

    NaN in imputable features are replaced by the training medians (stored in the model).
    The chosen kernel is refit on all data; Platt scaling (sigmoid) is fit on its
    cross-validated decision values (``CalibratedClassifierCV(ensemble=False)``).
    The fusion (logistic regression on ``[logit(p_dl2), logit(p_svm)]``) is fit on out-of-fold
    SVM probabilities, so it does not learn the SVM's optimism on its own training data.
    ``metrics`` records the CV AUC and best parameters of every kernel and the AUCs of DL#2
    alone, the SVM alone (out of fold) and the fusion (out of fold).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_predict

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y).astype(np.int64).reshape(-1)
    p_dl2 = np.asarray(p_dl2, dtype=np.float64).reshape(-1)
    if x.ndim != 2 or x.shape[1] != N_FEATURES or len(y) != len(x) or len(p_dl2) != len(x):
        raise ClinicalDataError(
            f"expected X [n, {N_FEATURES}], y [n] and p_dl2 [n]; got {list(x.shape)}, {len(y)}, {len(p_dl2)}"
        )
    if set(np.unique(y).tolist()) != {0, 1} or np.bincount(y).min() < folds:
        raise ClinicalDataError(
            f"expected labels 0 and 1 with at least {folds} patients each, got counts "
            f"{np.bincount(y, minlength=2).tolist()}"
        )
    bad = [k for k in kernels if k not in KERNELS]
    if not kernels or bad:
        raise ValueError(f"kernels must be a non-empty subset of {KERNELS}, got {list(kernels)}")
    medians = {}
    for j, f in enumerate(CLINICAL_SCHEMA):
        if f.imputable:
            col = x[:, j]
            if np.isnan(col).all():
                raise ClinicalDataError(f"feature {f.name!r} is missing for every patient")
            medians[f.name] = float(np.nanmedian(col))
    xi = validate_features(x, medians)

    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    per_kernel: dict[str, dict[str, Any]] = {}
    for k in kernels:
        grid = {f"svc__{p}": v for p, v in GRIDS[k].items()}
        gs = GridSearchCV(_pipeline(k, seed), grid, scoring="roc_auc", cv=cv, n_jobs=1)
        gs.fit(xi, y)
        best = {p.removeprefix("svc__"): v for p, v in gs.best_params_.items()}
        per_kernel[k] = {"cv_auc": float(gs.best_score_), "params": best}
    chosen = max(kernels, key=lambda k: per_kernel[k]["cv_auc"])
    params = per_kernel[chosen]["params"]

    model = _calibrated(chosen, seed, cv, **params).fit(xi, y)
    oof = cross_val_predict(_calibrated(chosen, seed, cv, **params), xi, y, cv=cv, method="predict_proba")[
        :, 1
    ]
    feats = np.stack([_logit(p_dl2), _logit(oof)], axis=1)
    lr = LogisticRegression(C=1e4, max_iter=1000).fit(feats, y)
    fused_oof = cross_val_predict(
        LogisticRegression(C=1e4, max_iter=1000), feats, y, cv=cv, method="predict_proba"
    )[:, 1]
    metrics = {
        "n_train": len(y),
        "n_covid": int(y.sum()),
        "folds": folds,
        "seed": seed,
        "kernels": per_kernel,
        "chosen_kernel": chosen,
        "auc_dl2": float(roc_auc_score(y, p_dl2)),
        "auc_svm_oof": float(roc_auc_score(y, oof)),
        "auc_fused_oof": float(roc_auc_score(y, fused_oof)),
    }
    return from_sklearn(
        model,
        medians=medians,
        fusion=Fusion(float(lr.coef_[0, 0]), float(lr.coef_[0, 1]), float(lr.intercept_[0])),
        metrics=metrics,
        provenance=provenance,
    )


def from_sklearn(
    calibrated: Any,
    *,
    medians: Mapping[str, float],
    fusion: Fusion,
    metrics: dict[str, Any] | None = None,
    provenance: str = "",
) -> ClinicalSVM:
    """Copy the numbers of a fitted ``CalibratedClassifierCV(Pipeline(StandardScaler, SVC),
    method="sigmoid", ensemble=False)``."""
    if (
        getattr(calibrated, "method", None) != "sigmoid"
        or len(getattr(calibrated, "calibrated_classifiers_", [])) != 1
        or list(calibrated.classes_) != [0, 1]
    ):
        raise ValueError(
            "expected a fitted binary (0/1) CalibratedClassifierCV(method='sigmoid', "
            "ensemble=False) around Pipeline([('scaler', StandardScaler()), ('svc', SVC())])"
        )
    cc = calibrated.calibrated_classifiers_[0]
    pipe, platt = cc.estimator, cc.calibrators[0]
    scaler, svc = pipe.named_steps["scaler"], pipe.named_steps["svc"]
    return ClinicalSVM(
        kernel=svc.kernel,
        C=float(svc.C),
        gamma=float(svc._gamma),
        degree=int(svc.degree),
        coef0=float(svc.coef0),
        scaler_mean=np.asarray(scaler.mean_, dtype=np.float64),
        scaler_scale=np.asarray(scaler.scale_, dtype=np.float64),
        support_vectors=np.asarray(svc.support_vectors_, dtype=np.float64),
        dual_coef=np.asarray(svc.dual_coef_, dtype=np.float64)[0],
        intercept=float(svc.intercept_[0]),
        platt_a=float(platt.a_),
        platt_b=float(platt.b_),
        medians=dict(medians),
        fusion=fusion,
        metrics=metrics or {},
        provenance=provenance,
    )
