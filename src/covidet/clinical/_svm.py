"""DL#3: an SVM on clinical features, fused with DL#2: the runtime model, plain numpy, no pickle.

`ClinicalSVM` reproduces ``SVC.decision_function`` and the Platt-scaled ``CalibratedClassifierCV(
method="sigmoid", ensemble=False).predict_proba`` for the linear, polynomial and RBF kernels. (``SVC(
probability=True)`` and its ``probA_``/``probB_`` are deprecated in scikit-learn 1.9; the calibrator's
``a_`` and ``b_`` are the same Platt parameters, fit on cross-validated decision values.)

Its model file (`save_svm`, `load_svm`) is `_svm_file`'s; training it with
scikit-learn (`train_svm`, `from_sklearn`) is `_svm_train`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from covidet.clinical._schema import ClinicalDataError, validate_features

__all__ = ["EPS", "KERNELS", "ClinicalSVM", "Fusion", "demo_model_path"]

KERNELS: tuple[str, ...] = ("linear", "poly", "rbf")
#: Probabilities are clipped to [EPS, 1 - EPS] before taking logits in the fusion.
EPS = 1e-6


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
