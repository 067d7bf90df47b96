"""Synthetic clinical data (COVID-19 vs influenza pneumonia) and its CSV format.

The class-conditional distributions follow the admission findings reported for COVID-19 versus
influenza pneumonia: COVID-19 shows lymphopenia, normal or low white-cell and neutrophil counts,
normal procalcitonin, higher LDH and D-dimer, lower temperature, later presentation after symptom
onset and more often a contact history; influenza shows higher fever, leukocytosis/neutrophilia,
higher procalcitonin and more cough. The distributions overlap on purpose (no single feature
separates the classes). Labels: 1 = COVID-19, 0 = other viral pneumonia.

``p_dl2`` simulates the DL#2 (CT) probability for training the DL#3 fusion: a noisy, informative
score ``sigmoid(1.6 * (2y - 1) + N(0, 1.6^2))`` (AUC about 0.9), independent of the clinical
features given the label.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal, overload

import numpy as np

from covidet.clinical._schema import CLINICAL_SCHEMA, FEATURE_NAMES, N_FEATURES, ClinicalDataError

__all__ = ["P_DL2_COLUMN", "generate_clinical", "read_csv", "write_csv"]

#: Optional CSV column with the simulated (or real) DL#2 probability.
P_DL2_COLUMN = "p_dl2"
_LABEL = "label"

# (COVID-19, influenza) parameters. Lab values are log-normal: (median, sigma of log).
_NORMAL = {
    "age": ((52.0, 15.0), (42.0, 20.0)),
    "temperature": ((37.9, 0.7), (38.6, 0.7)),
    "spo2": ((94.0, 3.0), (96.0, 2.5)),
    "days_since_onset": ((7.0, 4.0), (3.5, 2.5)),
}
_LOGNORMAL = {
    "wbc": ((5.0, 0.35), (7.0, 0.4)),
    "lymphocytes": ((0.85, 0.45), (1.2, 0.45)),
    "neutrophils": ((3.4, 0.45), (5.0, 0.5)),
    "crp": ((18.0, 1.0), (28.0, 1.0)),
    "procalcitonin": ((0.05, 0.8), (0.12, 1.0)),
    "ldh": ((290.0, 0.3), (230.0, 0.3)),
    "d_dimer": ((0.8, 0.7), (0.55, 0.7)),
}
_BERNOULLI = {
    "cough": (0.68, 0.85),
    "fatigue": (0.45, 0.55),
    "contact_history": (0.65, 0.25),
}


@overload
def generate_clinical(
    n: int,
    seed: int,
    *,
    covid_fraction: float = ...,
    missing_rate: float = ...,
    return_p_dl2: Literal[False] = ...,
) -> tuple[np.ndarray, np.ndarray]: ...


@overload
def generate_clinical(
    n: int,
    seed: int,
    *,
    covid_fraction: float = ...,
    missing_rate: float = ...,
    return_p_dl2: Literal[True],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


def generate_clinical(
    n: int,
    seed: int,
    *,
    covid_fraction: float = 0.5,
    missing_rate: float = 0.0,
    return_p_dl2: bool = False,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` synthetic patients: ``X`` float64 ``[n, N_FEATURES]``, ``y`` int64 (1 = COVID-19).

    ``missing_rate``: fraction of imputable (laboratory) values set to NaN. With
    ``return_p_dl2=True`` also returns the simulated DL#2 probability of each patient.
    """
    if n < 1 or not 0.0 <= covid_fraction <= 1.0 or not 0.0 <= missing_rate < 1.0:
        raise ValueError(
            f"expected n >= 1, covid_fraction in [0, 1], missing_rate in [0, 1); got n={n}, "
            f"covid_fraction={covid_fraction}, missing_rate={missing_rate}"
        )
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < covid_fraction).astype(np.int64)
    flu = y == 0
    x = np.empty((n, N_FEATURES))
    for j, f in enumerate(CLINICAL_SCHEMA):
        if f.name in _NORMAL:
            (m1, s1), (m0, s0) = _NORMAL[f.name]
            col = np.where(flu, rng.normal(m0, s0, n), rng.normal(m1, s1, n))
            col = np.round(col, 1)
        elif f.name in _LOGNORMAL:
            (m1, s1), (m0, s0) = _LOGNORMAL[f.name]
            col = np.where(flu, m0 * rng.lognormal(0, s0, n), m1 * rng.lognormal(0, s1, n))
            col = np.round(col, 3)
        else:
            p1, p0 = _BERNOULLI[f.name]
            col = (rng.random(n) < np.where(flu, p0, p1)).astype(np.float64)
        if f.name == "days_since_onset":
            col = np.round(col)
        x[:, j] = np.clip(col, max(f.low, 1.0) if f.name == "age" else f.low, f.high)
    if missing_rate > 0:
        for j, f in enumerate(CLINICAL_SCHEMA):
            if f.imputable:
                x[rng.random(n) < missing_rate, j] = np.nan
    if not return_p_dl2:
        return x, y
    logit = 1.6 * (2 * y - 1) + rng.normal(0.0, 1.6, n)
    return x, y, 1.0 / (1.0 + np.exp(-logit))


def write_csv(path: Path | str, x: np.ndarray, y: np.ndarray, p_dl2: np.ndarray | None = None) -> Path:
    """Write features (header = feature names [+ ``p_dl2``] + ``label``); NaN is an empty cell."""
    path = Path(path)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != N_FEATURES or len(y) != len(x):
        raise ClinicalDataError(
            f"expected X [n, {N_FEATURES}] and y [n], got {list(x.shape)} and {len(y)} labels"
        )
    if p_dl2 is not None and len(p_dl2) != len(x):
        raise ClinicalDataError(f"expected {len(x)} p_dl2 values, got {len(p_dl2)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    header = [*FEATURE_NAMES, *([P_DL2_COLUMN] if p_dl2 is not None else []), _LABEL]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for i in range(len(x)):
            row = ["" if np.isnan(v) else repr(float(v)) for v in x[i]]
            if p_dl2 is not None:
                row.append(repr(float(p_dl2[i])))
            w.writerow([*row, int(y[i])])
    return path


def read_csv(path: Path | str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Read a file written by `write_csv`: ``(X, y, p_dl2 or None)``; empty cells become NaN."""
    path = Path(path)
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise ClinicalDataError(f"{path} is empty; expected a header row and one row per patient")
    header = rows[0]
    expected = [*FEATURE_NAMES, _LABEL]
    with_p = header == [*FEATURE_NAMES, P_DL2_COLUMN, _LABEL]
    if header != expected and not with_p:
        raise ClinicalDataError(
            f"{path}: header {header} does not match the schema; expected "
            f"{expected} (optionally with {P_DL2_COLUMN!r} before {_LABEL!r})"
        )
    data = rows[1:]
    if not data:
        raise ClinicalDataError(f"{path} has a header but no patients")
    try:
        vals = np.array([[float(c) if c.strip() else np.nan for c in r] for r in data], dtype=np.float64)
    except ValueError as exc:
        raise ClinicalDataError(f"{path}: non-numeric cell ({exc}); expected numbers") from exc
    if vals.ndim != 2 or vals.shape[1] != len(header):
        raise ClinicalDataError(f"{path}: every row must have {len(header)} cells")
    labels = vals[:, -1]
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ClinicalDataError(f"{path}: label must be 0 (other viral) or 1 (COVID-19)")
    p_dl2 = vals[:, N_FEATURES] if with_p else None
    return vals[:, :N_FEATURES], labels.astype(np.int64), p_dl2
