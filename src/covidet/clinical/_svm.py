"""DL#3: an SVM on clinical features, fused with DL#2, stored without pickle.

Training (`train_svm`) uses scikit-learn; inference (`ClinicalSVM`) is plain numpy reproducing
``SVC.decision_function`` and the Platt-scaled ``CalibratedClassifierCV(method="sigmoid",
ensemble=False).predict_proba`` for the linear, polynomial and RBF kernels. (``SVC(probability=
True)`` and its ``probA_``/``probB_`` are deprecated in scikit-learn 1.9; the calibrator's ``a_``
and ``b_`` are the same Platt parameters, fit on cross-validated decision values.)

The model file is one JSON document holding every number (floats are written with ``repr`` and
read back bit-exactly) and a sha256 over its canonical content (`content_hash`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from covidet.clinical._schema import (
    CLINICAL_SCHEMA,
    FEATURE_NAMES,
    N_FEATURES,
    ClinicalDataError,
    Feature,
    validate_features,
)
from covidet.errors import ArtifactError

__all__ = [
    "FORMAT",
    "KERNELS",
    "ClinicalSVM",
    "Fusion",
    "ModelFileError",
    "demo_model_path",
    "train_svm",
]

FORMAT = "covidet.clinical_svm"
FORMAT_VERSION = 1
KERNELS: tuple[str, ...] = ("linear", "poly", "rbf")
#: Probabilities are clipped to [EPS, 1 - EPS] before taking logits in the fusion.
EPS = 1e-6
#: Cross-validated grids (features are standardized first).
GRIDS: dict[str, dict[str, list[Any]]] = {
    "linear": {"C": [0.01, 0.1, 1.0, 10.0]},
    "poly": {"C": [0.1, 1.0, 10.0], "gamma": [0.02, 0.07], "degree": [2, 3], "coef0": [1.0]},
    "rbf": {"C": [0.3, 1.0, 3.0, 10.0], "gamma": [0.01, 0.03, 0.1]},
}


class ModelFileError(ArtifactError, ValueError):
    """A clinical SVM model file is unreadable, malformed, inconsistent or tampered with."""


def demo_model_path() -> Path:
    """The shipped demo model (trained on synthetic data, see ``clinical/demo/README.md``)."""
    return Path(__file__).resolve().parent / "demo" / "clinical_svm.json"


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1.0 - EPS)
    return np.log(p) - np.log1p(-p)


@dataclass(frozen=True)
class Fusion:
    """DL#3 rule: ``P = sigmoid(w_dl2 * logit(p_dl2) + w_svm * logit(p_svm) + bias)``."""

    w_dl2: float
    w_svm: float
    bias: float

    def __call__(self, p_dl2: np.ndarray | float, p_svm: np.ndarray | float) -> np.ndarray:
        z = self.w_dl2 * _logit(np.asarray(p_dl2)) + self.w_svm * _logit(np.asarray(p_svm))
        return np.asarray(1.0 / (1.0 + np.exp(-(z + self.bias))))


@dataclass
class ClinicalSVM:
    """A trained standardizer + binary SVC (1 = COVID-19) + Platt scaling + DL#3 fusion.

    ``P(COVID-19) = 1 / (1 + exp(platt_a * f + platt_b))`` with ``f`` the decision function.
    """

    kernel: str
    C: float
    gamma: float
    degree: int
    coef0: float
    scaler_mean: np.ndarray
    scaler_scale: np.ndarray
    support_vectors: np.ndarray
    dual_coef: np.ndarray
    intercept: float
    platt_a: float
    platt_b: float
    medians: dict[str, float]
    fusion: Fusion
    metrics: dict[str, Any] = field(default_factory=dict)
    provenance: str = ""

    # --- inference ------------------------------------------------------------------------------

    def validate(self, x: Sequence[float] | np.ndarray) -> np.ndarray:
        """Checked, imputed ``[n, N_FEATURES]`` float64 features (see `validate_features`)."""
        return validate_features(x, self.medians)

    def _kernel(self, z: np.ndarray) -> np.ndarray:
        sv = self.support_vectors
        if self.kernel == "linear":
            return z @ sv.T
        if self.kernel == "poly":
            return np.asarray((self.gamma * (z @ sv.T) + self.coef0) ** self.degree)
        d2 = (z * z).sum(1)[:, None] + (sv * sv).sum(1)[None, :] - 2.0 * (z @ sv.T)
        return np.exp(-self.gamma * np.maximum(d2, 0.0))

    def decision_function(self, x: Sequence[float] | np.ndarray) -> np.ndarray:
        """Signed distance, positive = COVID-19 (as ``SVC.decision_function``), shape ``[n]``."""
        z = (self.validate(x) - self.scaler_mean) / self.scaler_scale
        return self._kernel(z) @ self.dual_coef + self.intercept

    def predict_proba(self, x: Sequence[float] | np.ndarray) -> np.ndarray:
        """``[n, 2]`` Platt probabilities (other viral, COVID-19), as the calibrated SVC's."""
        fab = self.platt_a * self.decision_function(x) + self.platt_b
        e = np.exp(-np.abs(fab))
        p1 = np.where(fab >= 0, e / (1.0 + e), 1.0 / (1.0 + e))
        return np.stack([1.0 - p1, p1], axis=1)

    def p_covid(self, x: Sequence[float] | np.ndarray) -> np.ndarray:
        """SVM P(COVID-19) from clinical features, shape ``[n]``."""
        return self.predict_proba(x)[:, 1]

    def fused(self, p_dl2: np.ndarray | float, x: Sequence[float] | np.ndarray) -> np.ndarray:
        """DL#3: P(COVID-19 | viral, clinical) from DL#2's probability and clinical features."""
        p = np.asarray(p_dl2, dtype=np.float64).reshape(-1)
        if not (np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()):
            raise ClinicalDataError(f"expected DL#2 probabilities in [0, 1], got {p.tolist()}")
        return self.fusion(p, self.p_covid(x))

    # --- file format ----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The model file content (without its hash)."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "provenance": self.provenance,
            "schema": [_feature_record(f) for f in CLINICAL_SCHEMA],
            "imputation_medians": {k: float(v) for k, v in self.medians.items()},
            "scaler": {"mean": _floats(self.scaler_mean), "scale": _floats(self.scaler_scale)},
            "svm": {
                "kernel": self.kernel,
                "C": float(self.C),
                "gamma": float(self.gamma),
                "degree": int(self.degree),
                "coef0": float(self.coef0),
                "support_vectors": [_floats(r) for r in self.support_vectors],
                "dual_coef": _floats(self.dual_coef),
                "intercept": float(self.intercept),
                "platt_a": float(self.platt_a),
                "platt_b": float(self.platt_b),
            },
            "fusion": {
                "w_dl2": float(self.fusion.w_dl2),
                "w_svm": float(self.fusion.w_svm),
                "bias": float(self.fusion.bias),
                "eps": EPS,
            },
            "metrics": self.metrics,
        }

    def save(self, path: Path | str) -> Path:
        """Write the JSON model file (a directory gets ``clinical_svm.json``); returns its path."""
        path = Path(path)
        if path.suffix != ".json":
            path = path / "clinical_svm.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        content = self.to_dict()
        content["sha256"] = content_hash(content)
        path.write_text(json.dumps(content, indent=1, sort_keys=True, allow_nan=False) + "\n")
        return path

    @classmethod
    def load(cls, path: Path | str) -> ClinicalSVM:
        """Read and validate a model file; any problem raises `ModelFileError` naming it."""
        path = Path(path)
        if path.is_dir():
            path = path / "clinical_svm.json"
        try:
            text = path.read_text()
        except OSError as exc:
            raise ModelFileError(f"cannot read clinical SVM model file {path}: {exc}") from exc
        try:
            doc = json.loads(text, parse_constant=_reject_constant)
        except ValueError as exc:
            raise ModelFileError(f"{path} is not valid JSON: {exc}") from exc
        try:
            return cls.from_dict(doc)
        except ModelFileError as exc:
            raise ModelFileError(f"{path}: {exc}") from None

    @classmethod
    def from_dict(cls, doc: Any) -> ClinicalSVM:
        """Validate a parsed model file (format, hash, schema, shapes, finiteness)."""
        if not isinstance(doc, dict):
            raise ModelFileError(f"expected a JSON object, got {type(doc).__name__}")
        if doc.get("format") != FORMAT or doc.get("format_version") != FORMAT_VERSION:
            raise ModelFileError(
                f"format {doc.get('format')!r} v{doc.get('format_version')!r} is not "
                f"{FORMAT!r} v{FORMAT_VERSION}: write it with covidet train-svm"
            )
        stored = doc.get("sha256")
        body = {k: v for k, v in doc.items() if k != "sha256"}
        if not isinstance(stored, str) or stored != content_hash(body):
            raise ModelFileError(
                "sha256 mismatch: the content was modified after it was written (tampered or "
                "corrupted); retrain it with covidet train-svm or restore the original file"
            )
        _check_schema(doc.get("schema"))
        svm = _get(doc, "svm", dict)
        kernel = _get(svm, "kernel", str)
        if kernel not in KERNELS:
            raise ModelFileError(f"svm.kernel {kernel!r} is not one of {KERNELS}")
        sv = _array(svm, "support_vectors", 2)
        if sv.shape[0] < 1 or sv.shape[1] != N_FEATURES:
            raise ModelFileError(
                f"svm.support_vectors has shape {list(sv.shape)}, expected [m >= 1, {N_FEATURES}]"
            )
        dual = _array(svm, "dual_coef", 1)
        if dual.shape != (sv.shape[0],):
            raise ModelFileError(
                f"svm.dual_coef has {dual.size} values, expected one per support vector ({sv.shape[0]})"
            )
        scaler = _get(doc, "scaler", dict)
        mean, scale = _array(scaler, "mean", 1), _array(scaler, "scale", 1)
        if mean.shape != (N_FEATURES,) or scale.shape != (N_FEATURES,) or (scale <= 0).any():
            raise ModelFileError(
                f"scaler.mean/scale must be {N_FEATURES} finite values (scale > 0), got "
                f"{mean.size}/{scale.size}"
            )
        gamma, degree = _number(svm, "gamma"), svm.get("degree")
        if kernel != "linear" and gamma <= 0:
            raise ModelFileError(f"svm.gamma must be > 0 for the {kernel} kernel, got {gamma}")
        if not isinstance(degree, int) or degree < 1:
            raise ModelFileError(f"svm.degree must be an integer >= 1, got {degree!r}")
        medians = _get(doc, "imputation_medians", dict)
        want = {f.name for f in CLINICAL_SCHEMA if f.imputable}
        if set(medians) != want:
            raise ModelFileError(
                f"imputation_medians has keys {sorted(medians)}, expected the imputable features "
                f"{sorted(want)}"
            )
        meds = {k: _number(medians, k) for k in medians}
        fus = _get(doc, "fusion", dict)
        metrics = doc.get("metrics", {})
        return cls(
            kernel=kernel,
            C=_number(svm, "C"),
            gamma=gamma,
            degree=degree,
            coef0=_number(svm, "coef0"),
            scaler_mean=mean,
            scaler_scale=scale,
            support_vectors=sv,
            dual_coef=dual,
            intercept=_number(svm, "intercept"),
            platt_a=_number(svm, "platt_a"),
            platt_b=_number(svm, "platt_b"),
            medians=meds,
            fusion=Fusion(_number(fus, "w_dl2"), _number(fus, "w_svm"), _number(fus, "bias")),
            metrics=metrics if isinstance(metrics, dict) else {},
            provenance=str(doc.get("provenance", "")),
        )


def content_hash(content: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON (sorted keys, no spaces) of a model file without its hash."""
    canon = json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canon.encode()).hexdigest()


def _floats(a: np.ndarray | Sequence[float]) -> list[float]:
    return [float(v) for v in np.asarray(a, dtype=np.float64).reshape(-1)]


def _reject_constant(name: str) -> None:
    raise ValueError(f"non-finite number {name} is not allowed")


def _get(d: Mapping[str, Any], key: str, kind: type) -> Any:
    v = d.get(key)
    if not isinstance(v, kind):
        raise ModelFileError(f"field {key!r} missing or not a {kind.__name__}")
    return v


def _number(d: Mapping[str, Any], key: str) -> float:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ModelFileError(f"field {key!r} must be a finite number, got {v!r}")
    return float(v)


def _array(d: Mapping[str, Any], key: str, ndim: int) -> np.ndarray:
    try:
        a = np.array(d.get(key), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"field {key!r} is not a numeric array: {exc}") from None
    if a.ndim != ndim or not np.isfinite(a).all():
        raise ModelFileError(f"field {key!r} must be a finite {ndim}-D array, got shape {a.shape}")
    return a


def _feature_record(f: Feature) -> dict[str, Any]:
    """How one schema feature is stored in (and checked against) a model file."""
    return {
        "name": f.name,
        "unit": f.unit,
        "low": f.low,
        "high": f.high,
        "imputable": f.imputable,
        "binary": f.binary,
    }


def _check_schema(schema: Any) -> None:
    if not isinstance(schema, list) or len(schema) != N_FEATURES:
        n = len(schema) if isinstance(schema, list) else "no"
        raise ModelFileError(f"schema has {n} features, expected {N_FEATURES}: {', '.join(FEATURE_NAMES)}")
    for i, (got, f) in enumerate(zip(schema, CLINICAL_SCHEMA, strict=True)):
        want = _feature_record(f)
        if got != want:
            raise ModelFileError(
                f"schema feature {i} is {got}, but this covidet expects {want}: the model was "
                "trained for another feature schema; retrain it"
            )


# --- training ---------------------------------------------------------------------------------


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
