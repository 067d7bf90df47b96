"""The clinical feature schema (DL#3 input) and the validation of feature vectors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from covidet import _contract as C
from covidet.errors import InvalidInputError

__all__ = [
    "CLINICAL_SCHEMA",
    "FEATURE_NAMES",
    "N_FEATURES",
    "ClinicalDataError",
    "Feature",
    "validate_features",
]


class ClinicalDataError(InvalidInputError):
    """Clinical features are malformed: wrong count, out of range, or missing where not allowed."""


@dataclass(frozen=True)
class Feature:
    """One clinical feature: its name, unit, plausible range (inclusive) and meaning.

    ``imputable`` features may be missing (NaN): they are replaced by the training-set median
    recorded in the model file. ``binary`` features must be 0 (no) or 1 (yes).
    """

    name: str
    unit: str
    low: float
    high: float
    description: str
    imputable: bool = False
    binary: bool = False


#: Admission features for COVID-19 vs other viral (influenza) pneumonia, in wire order.
#: Demographics, vital signs, symptoms and exposure are always recorded (not imputable);
#: laboratory values are often missing at admission and are imputed with the training median.
CLINICAL_SCHEMA: tuple[Feature, ...] = (
    Feature("age", "years", 0.0, 120.0, "age at admission"),
    Feature("temperature", "°C", 34.0, 43.0, "highest body temperature at admission"),
    Feature("wbc", "10^9/L", 0.1, 100.0, "white blood cell count", imputable=True),
    Feature("lymphocytes", "10^9/L", 0.0, 50.0, "lymphocyte count", imputable=True),
    Feature("neutrophils", "10^9/L", 0.0, 100.0, "neutrophil count", imputable=True),
    Feature("crp", "mg/L", 0.0, 500.0, "C-reactive protein", imputable=True),
    Feature("procalcitonin", "ng/mL", 0.0, 200.0, "procalcitonin", imputable=True),
    Feature("ldh", "U/L", 50.0, 5000.0, "lactate dehydrogenase", imputable=True),
    Feature("d_dimer", "mg/L FEU", 0.0, 100.0, "D-dimer", imputable=True),
    Feature("spo2", "%", 50.0, 100.0, "oxygen saturation on room air"),
    Feature("days_since_onset", "days", 0.0, 60.0, "days from symptom onset to the CT scan"),
    Feature("cough", "0/1", 0.0, 1.0, "cough (1 = yes)", binary=True),
    Feature("fatigue", "0/1", 0.0, 1.0, "fatigue or myalgia (1 = yes)", binary=True),
    Feature(
        "contact_history",
        "0/1",
        0.0,
        1.0,
        "contact with a confirmed case or stay in an outbreak area within 14 days (1 = yes)",
        binary=True,
    ),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in CLINICAL_SCHEMA)
N_FEATURES = len(CLINICAL_SCHEMA)

if C.CLINICAL_SVM.input("CLINICAL").dims != (N_FEATURES,):  # pragma: no cover - import-time guard
    raise RuntimeError(
        f"wire contract CLINICAL dims {C.CLINICAL_SVM.input('CLINICAL').dims} disagree with the "
        f"{N_FEATURES} features of CLINICAL_SCHEMA: update covidet._contract.CLINICAL_SVM"
    )


def _order() -> str:
    return ", ".join(f"{f.name} [{f.unit}]" for f in CLINICAL_SCHEMA)


def validate_features(
    x: Sequence[float] | np.ndarray, medians: Mapping[str, float] | None = None
) -> np.ndarray:
    """Check clinical features (one vector or a ``[n, N_FEATURES]`` matrix) and impute.

    Returns a float64 ``[n, N_FEATURES]`` copy. NaN in an imputable feature becomes
    ``medians[name]`` (required then); NaN elsewhere, +-inf, out-of-range values and non-0/1
    binary values raise `ClinicalDataError` naming the feature, value, valid range and unit.
    """
    arr = np.array(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[np.newaxis]
    if arr.ndim != 2 or arr.shape[1] != N_FEATURES:
        raise ClinicalDataError(
            f"expected {N_FEATURES} clinical features per patient (a vector of {N_FEATURES} or an "
            f"[n, {N_FEATURES}] matrix), got shape {list(np.shape(x))}; the order is: {_order()}"
        )
    for j, f in enumerate(CLINICAL_SCHEMA):
        col = arr[:, j]
        missing = np.isnan(col)
        if missing.any():
            row = int(np.flatnonzero(missing)[0])
            if not f.imputable:
                raise ClinicalDataError(
                    f"clinical feature {f.name!r} ({f.description}) is missing (NaN) in row {row}; "
                    f"it cannot be imputed: give a value in [{f.low:g}, {f.high:g}] {f.unit}"
                )
            if medians is None or f.name not in medians:
                raise ClinicalDataError(
                    f"clinical feature {f.name!r} is missing (NaN) in row {row} and no imputation "
                    "median is available: give a value or use a model file with medians"
                )
            col[missing] = float(medians[f.name])
        bad = ~((col >= f.low) & (col <= f.high))
        if f.binary:
            bad |= ~np.isin(col, (0.0, 1.0))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            valid = "0 (no) or 1 (yes)" if f.binary else f"[{f.low:g}, {f.high:g}] {f.unit}"
            raise ClinicalDataError(
                f"clinical feature {f.name!r} ({f.description}) = {col[row]!r} in row {row} is "
                f"outside its valid range {valid}; check the value and its unit"
            )
    return arr
