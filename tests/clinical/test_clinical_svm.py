"""DL#3 SVM: numpy inference equals scikit-learn per kernel, pickle-free file, fusion, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.model_selection import StratifiedKFold

from covidet.cli._clinical import main_make_clinical, main_train_svm
from covidet.clinical import (
    KERNELS,
    ClinicalSVM,
    ModelFileError,
    demo_model_path,
    generate_clinical,
    identity,
    load_svm,
    save_svm,
    train_svm,
    validate_features,
)
from covidet.clinical._svm_file import content_hash
from covidet.clinical._svm_train import _calibrated


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return generate_clinical(160, seed=7, missing_rate=0.05, return_p_dl2=True)


@pytest.fixture(scope="module")
def models(data: Any) -> dict[str, ClinicalSVM]:
    x, y, p = data
    return {k: train_svm(x, y, seed=0, p_dl2=p, kernels=[k]) for k in KERNELS}


@pytest.mark.parametrize("kernel", KERNELS)
def test_numpy_inference_equals_sklearn(
    data: Any, models: dict[str, ClinicalSVM], kernel: str, tmp_path: Path
) -> None:
    x, y, _ = data
    m = models[kernel]
    assert m.kernel == kernel and m.metrics["chosen_kernel"] == kernel
    params = m.metrics["kernels"][kernel]["params"]
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    ref = _calibrated(kernel, 0, cv, **params).fit(validate_features(x, m.medians), y)
    xt, _ = generate_clinical(200, seed=99)
    pipe = ref.calibrated_classifiers_[0].estimator
    np.testing.assert_allclose(m.decision_function(xt), pipe.decision_function(xt), atol=1e-6)
    np.testing.assert_allclose(m.predict_proba(xt), ref.predict_proba(xt), atol=1e-6)
    # and after a save/load round trip through JSON
    loaded = load_svm(save_svm(m, tmp_path / "m.json"))
    np.testing.assert_allclose(loaded.predict_proba(xt), ref.predict_proba(xt), atol=1e-6)


def test_training_reports_cv_auc_per_kernel_and_fusion_helps(data: Any) -> None:
    x, y, p = data
    m = train_svm(x, y, seed=0, p_dl2=p)
    aucs = {k: v["cv_auc"] for k, v in m.metrics["kernels"].items()}
    assert set(aucs) == set(KERNELS) and all(0.8 < a <= 1.0 for a in aucs.values())
    assert m.metrics["chosen_kernel"] == max(aucs, key=aucs.__getitem__)
    assert m.metrics["auc_fused_oof"] > m.metrics["auc_dl2"]
    assert m.fusion.w_dl2 > 0 and m.fusion.w_svm > 0
    # the fusion is monotone in both inputs
    xt, _ = generate_clinical(5, seed=4)
    assert (m.fused(0.9, xt[:1]) > m.fused(0.1, xt[:1])).all()


def test_demo_model_loads_and_discriminates() -> None:
    m = load_svm(demo_model_path())
    assert "synthetic" in m.provenance
    x, y = generate_clinical(300, seed=12345)
    p = m.p_covid(x)
    assert p[y == 1].mean() > p[y == 0].mean() + 0.3


def test_identity_names_the_file_it_was_read_from(tmp_path: Path) -> None:
    demo = load_svm(demo_model_path())
    ident = identity(demo)
    assert ident["sha256"] == _doc()["sha256"][:16]  # the stored hash: to_dict rebuilds the content
    assert ident["architecture"] == f"svm-{demo.kernel}" and ident["provenance"] == demo.provenance
    assert json.loads(json.dumps(ident)) == ident
    other = ClinicalSVM(**{**demo.__dict__, "intercept": demo.intercept + 1e-9})
    assert identity(load_svm(save_svm(other, tmp_path / "o.json")))["sha256"] != ident["sha256"]
    # the shipped demo is named a demo (the answer's DEMO_MODELS flag); any other file is not
    assert ident["variant"] == "demo" and identity(other)["variant"] is None


def _doc() -> dict[str, Any]:
    return json.loads(demo_model_path().read_text())


def _write(tmp_path: Path, doc: dict[str, Any], rehash: bool) -> Path:
    if rehash:
        doc["sha256"] = content_hash({k: v for k, v in doc.items() if k != "sha256"})
    path = tmp_path / "m.json"
    path.write_text(json.dumps(doc))
    return path


def test_tampered_file_is_refused(tmp_path: Path) -> None:
    doc = _doc()
    doc["svm"]["intercept"] += 0.5
    with pytest.raises(ModelFileError, match="sha256 mismatch"):
        load_svm(_write(tmp_path, doc, rehash=False))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["svm"].__setitem__("dual_coef", d["svm"]["dual_coef"][:-1]), "dual_coef"),
        (lambda d: d["svm"]["support_vectors"][0].pop(), "support_vectors"),
        (lambda d: d["scaler"]["scale"].__setitem__(0, 0.0), "scale > 0"),
        (lambda d: d["schema"][0].__setitem__("unit", "months"), "schema feature 0"),
        (lambda d: d["svm"].__setitem__("kernel", "sigmoid"), "kernel"),
        (lambda d: d["imputation_medians"].pop("ldh"), "imputation_medians"),
        (lambda d: d["fusion"].__setitem__("w_svm", "x"), "w_svm"),
    ],
)
def test_malformed_file_is_refused_naming_the_problem(tmp_path: Path, edit: Any, message: str) -> None:
    doc = _doc()
    edit(doc)
    with pytest.raises(ModelFileError, match=message):
        load_svm(_write(tmp_path, doc, rehash=True))


def test_non_json_and_non_finite_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_svm(path)
    path.write_text(demo_model_path().read_text().replace('"C": ', '"C": NaN, "x": ', 1))
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_svm(path)
    with pytest.raises(ModelFileError, match="cannot read"):
        load_svm(tmp_path / "absent.json")


def test_cli_make_and_train(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "features.csv"
    assert main_make_clinical(["--n", "120", "--seed", "1", "--out", str(csv)]) == 0
    assert main_train_svm([str(csv), "--out", str(tmp_path / "model"), "--kernels", "linear", "rbf"]) == 0
    out = capsys.readouterr().out
    assert "linear" in out and "rbf" in out and "CV AUC" in out
    m = load_svm(tmp_path / "model")
    assert set(m.metrics["kernels"]) == {"linear", "rbf"}
