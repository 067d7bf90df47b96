"""Clinical feature schema, validation/imputation messages, synthetic data and CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from covidet import _contract as C
from covidet.clinical import (
    CLINICAL_SCHEMA,
    FEATURE_NAMES,
    N_FEATURES,
    ClinicalDataError,
    generate_clinical,
    read_csv,
    validate_features,
    write_csv,
)


def _patient() -> np.ndarray:
    x, _ = generate_clinical(1, seed=3)
    return x[0]


def test_schema_matches_wire_contract_and_is_documented() -> None:
    assert C.CLINICAL_SVM.input("CLINICAL").dims == (N_FEATURES,)
    assert len(set(FEATURE_NAMES)) == N_FEATURES
    for f in CLINICAL_SCHEMA:
        assert f.low < f.high and f.unit and f.description
        assert not (f.binary and f.imputable)


def test_out_of_range_message_names_feature_value_range_and_unit() -> None:
    x = _patient()
    x[FEATURE_NAMES.index("temperature")] = 48.0
    with pytest.raises(ClinicalDataError) as exc:
        validate_features(x)
    msg = str(exc.value)
    assert "'temperature'" in msg and "48.0" in msg and "[34, 43]" in msg and "°C" in msg


def test_binary_feature_must_be_0_or_1() -> None:
    x = _patient()
    x[FEATURE_NAMES.index("cough")] = 0.5
    with pytest.raises(ClinicalDataError, match=r"'cough'.*0 \(no\) or 1 \(yes\)"):
        validate_features(x)


def test_wrong_feature_count_states_expected_count_and_order() -> None:
    with pytest.raises(ClinicalDataError) as exc:
        validate_features(np.zeros(N_FEATURES - 1))
    msg = str(exc.value)
    assert f"expected {N_FEATURES}" in msg and "[13]" in msg
    assert msg.index("age [years]") < msg.index("contact_history")


def test_missing_imputable_uses_median_missing_other_is_an_error() -> None:
    x = _patient()
    j = FEATURE_NAMES.index("ldh")
    x[j] = np.nan
    out = validate_features(x, {f.name: 123.0 for f in CLINICAL_SCHEMA if f.imputable})
    assert out[0, j] == 123.0 and np.isnan(x[j])  # the input is not modified
    with pytest.raises(ClinicalDataError, match="no imputation median"):
        validate_features(x)
    y = _patient()
    y[FEATURE_NAMES.index("age")] = np.nan
    with pytest.raises(ClinicalDataError, match=r"'age'.*cannot be imputed"):
        validate_features(y, {"age": 40.0})


def test_generator_is_in_range_reproducible_and_class_conditional() -> None:
    x, y, p = generate_clinical(2000, seed=1, covid_fraction=0.3, return_p_dl2=True)
    validate_features(x)  # every generated value is valid
    assert np.array_equal(x, generate_clinical(2000, seed=1, covid_fraction=0.3)[0])
    assert 0.25 < y.mean() < 0.35
    lym = x[:, FEATURE_NAMES.index("lymphocytes")]
    pct = x[:, FEATURE_NAMES.index("procalcitonin")]
    assert np.median(lym[y == 1]) < np.median(lym[y == 0])  # lymphopenia in COVID-19
    assert np.median(pct[y == 1]) < np.median(pct[y == 0])
    assert p[y == 1].mean() > p[y == 0].mean() and ((p > 0) & (p < 1)).all()


def test_csv_round_trip_with_missing_values(tmp_path: Path) -> None:
    x, y, p = generate_clinical(50, seed=2, missing_rate=0.2, return_p_dl2=True)
    assert np.isnan(x).any()
    path = write_csv(tmp_path / "f.csv", x, y, p)
    assert path.read_text().splitlines()[0].split(",") == [*FEATURE_NAMES, "p_dl2", "label"]
    x2, y2, p2 = read_csv(path)
    np.testing.assert_array_equal(x2, x)  # NaN positions and bit-exact values
    np.testing.assert_array_equal(y2, y)
    assert p2 is not None
    np.testing.assert_array_equal(p2, p)
    x3, _, p3 = read_csv(write_csv(tmp_path / "g.csv", x, y))
    assert p3 is None and x3.shape == x.shape


def test_csv_with_wrong_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("age,temp,label\n1,2,0\n")
    with pytest.raises(ClinicalDataError, match="does not match the schema"):
        read_csv(path)
