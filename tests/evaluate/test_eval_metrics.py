"""The evaluation's metrics against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from covidet.evaluate import binary_task, multiclass_summary, youden_cutoff
from covidet.evaluate._metrics import stratified_resamples
from covidet.evaluate._rules import task_scores
from covidet.metrics import bland_altman, decision_statistics, net_benefit, volume_error

# 4 negatives, 2 positives. AUC: the positive 0.4 beats 3 negatives, 0.9 beats all 4 -> 7/8.
Y = np.array([0, 0, 0, 1, 0, 1])
S = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.9])


def test_perfectly_separable_scores_give_auc_1_and_a_ci_at_1() -> None:
    y = np.array([0] * 10 + [1] * 10)
    s = np.linspace(0, 1, 20)
    t = binary_task("sep", y, s, n_boot=200, seed=1)
    assert t["auc"] == {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0}
    assert t["average_precision"]["value"] == pytest.approx(1.0)


def test_a_constant_score_gives_auc_one_half() -> None:
    y = np.array([0] * 7 + [1] * 5)
    t = binary_task("const", y, np.full(12, 0.3), n_boot=100, seed=0)
    assert t["auc"]["value"] == 0.5
    assert t["auc"]["ci_low"] == t["auc"]["ci_high"] == 0.5


def test_hand_computed_auc_youden_and_decision_statistics() -> None:
    t = binary_task("hand", Y, S, operating={"threshold": S >= 0.5}, n_boot=0)
    assert t["auc"]["value"] == pytest.approx(7 / 8)
    # at 0.5: called 0.5 (negative) and 0.9 (positive): TP 1, FP 1, FN 1, TN 3
    op = t["operating_points"]["threshold"]
    assert op["counts"] == {"tp": 1, "fp": 1, "fn": 1, "tn": 3}
    assert op["sensitivity"]["value"] == 0.5
    assert op["specificity"]["value"] == 0.75
    assert op["ppv"]["value"] == 0.5
    assert op["npv"]["value"] == 0.75
    assert op["f1"]["value"] == 0.5
    assert op["accuracy"]["value"] == pytest.approx(4 / 6)
    # Youden: cut-off 0.4 gives sensitivity 1, specificity 3/4 (J 0.75), better than 0.9 (J 0.5)
    assert youden_cutoff(Y, S) == (pytest.approx(0.4), pytest.approx(0.75))
    assert t["youden"]["sensitivity"]["value"] == 1.0
    assert t["youden"]["specificity"]["value"] == 0.75
    # Brier: mean squared error of the probabilities
    assert t["brier"]["value"] == pytest.approx(float(np.mean((S - Y) ** 2)))


def test_decision_statistics_say_nan_where_undefined() -> None:
    s = decision_statistics(np.array([1, 0, 0]), np.array([0, 0, 0]))
    assert s["sensitivity"] == 0.0 and s["specificity"] == 1.0
    assert np.isnan(s["ppv"])  # nothing called positive
    assert s["npv"] == pytest.approx(2 / 3)


def test_a_task_without_both_classes_has_a_note_not_an_auc() -> None:
    t = binary_task("one class", np.ones(4), np.linspace(0, 1, 4), n_boot=10)
    assert "auc" not in t and t["note"]


def test_the_bootstrap_is_stratified_and_seeded() -> None:
    y = np.array([0] * 6 + [1] * 3)
    a = stratified_resamples(y, 20, seed=5)
    b = stratified_resamples(y, 20, seed=5)
    assert all(np.array_equal(i, j) for i, j in zip(a, b, strict=True))
    assert all(int(y[i].sum()) == 3 and i.size == 9 for i in a)  # class counts kept
    t1 = binary_task("x", Y, S, n_boot=300, seed=3)
    t2 = binary_task("x", Y, S, n_boot=300, seed=3)
    assert t1["auc"] == t2["auc"]
    assert t1["auc"]["ci_low"] < t1["auc"]["value"] <= t1["auc"]["ci_high"]


def test_multiclass_auc_perfect_and_the_confusion_matrix() -> None:
    y = np.repeat(np.arange(4), 3)
    p = np.full((12, 4), 0.1)
    p[np.arange(12), y] = 0.7
    p[0] = [0.2, 0.5, 0.2, 0.1]  # one non-pneumonia scan called CAP, still ranked... below the CAP scans
    m = multiclass_summary(y, p, ("a", "b", "c", "d"), n_boot=50)
    cm = np.array(m["confusion_matrix"]["matrix"])
    assert cm.trace() == 11 and cm[0, 1] == 1
    assert m["accuracy"]["value"] == pytest.approx(11 / 12)
    q = np.eye(4)[y] * 0.9 + 0.025
    perfect = multiclass_summary(y, q, ("a", "b", "c", "d"), n_boot=20)
    assert perfect["macro_auc_ovr"]["value"] == 1.0 and perfect["multiway_auc_ovo"]["value"] == 1.0


def test_bland_altman_by_hand() -> None:
    ba = bland_altman(np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 1.0]))
    assert ba["bias"] == 1.0 and ba["sd"] == 1.0
    assert ba["loa_low"] == pytest.approx(-0.96) and ba["loa_high"] == pytest.approx(2.96)
    assert volume_error(110.0, 100.0) == {"error_ml": 10.0, "relative_error": 0.1}


def test_net_benefit_by_hand() -> None:
    # at pt = 0.5 the calls are 0.5 (FP) and 0.9 (TP): 1/6 - 1/6 * 1 = 0
    nb = net_benefit(Y, S, np.array([0.25, 0.5]))
    # at pt = 0.25: calls 0.3 (FP), 0.4 (TP), 0.5 (FP), 0.9 (TP): 2/6 - 2/6 * (1/3)
    assert nb["model"] == pytest.approx([2 / 6 - 2 / 18, 0.0])
    assert nb["treat_all"] == pytest.approx([2 / 6 - 4 / 6 / 3, 2 / 6 - 4 / 6])
    with pytest.raises(ValueError):
        net_benefit(Y, S, np.array([0.0]))


def test_jin_task_specific_scores() -> None:
    labels = np.array([0, 3])
    probs = np.array([[0.6, 0.1, 0.1, 0.2], [0.1, 0.2, 0.2, 0.5]])
    tasks = {t.name: t for t in task_scores(labels, probs)}
    pn = tasks["pneumonia vs non-pneumonia"]
    assert pn.score == pytest.approx([0.4, 0.9])  # the pneumonia scores summed
    cov = tasks["COVID-19 vs other pneumonia"]
    assert cov.members.tolist() == [False, True]  # the pneumonia scans only
    assert cov.score == pytest.approx([0.5 / 0.9])  # non-pneumonia muted, renormalised


def test_the_bootstraps_numpy_auc_and_ap_equal_scikit_learns() -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    from covidet.evaluate._metrics import rank_auc, step_average_precision

    rng = np.random.default_rng(7)
    for _ in range(20):
        y = rng.integers(0, 2, 30)
        y[:2] = [0, 1]
        s = np.round(rng.random(30), 1)  # many ties
        assert rank_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert step_average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_the_bootstraps_multiclass_aucs_equal_scikit_learns() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(8)
    y = np.r_[np.repeat(np.arange(4), 5), rng.integers(0, 4, 13)]  # unbalanced: ovr != ovo
    p = rng.dirichlet(np.ones(4), y.size)
    m = multiclass_summary(y, p, ("a", "b", "c", "d"), n_boot=1, seed=0)
    # the bootstrap's one resample recomputed both ways
    idx = stratified_resamples(y, 1, 0)[0]
    for key, mode in (("macro_auc_ovr", "ovr"), ("multiway_auc_ovo", "ovo")):
        ref = roc_auc_score(y[idx], p[idx], multi_class=mode, average="macro", labels=[0, 1, 2, 3])
        assert m[key]["ci_low"] == pytest.approx(ref, abs=1e-12)
        assert m[key]["value"] == pytest.approx(roc_auc_score(y, p, multi_class=mode, labels=[0, 1, 2, 3]))
