"""Top-K fusion, stepwise probability, volumes and Dice (hand-computed)."""

from __future__ import annotations

import numpy as np
import pytest

from covidet import ensemble as P
from covidet.metrics import dice


def test_topk_fusion_hand_computed() -> None:
    probs = np.array(
        [
            [0.7, 0.1, 0.1, 0.1],
            [0.1, 0.1, 0.1, 0.7],
            [0.2, 0.1, 0.1, 0.6],
            [0.4, 0.1, 0.1, 0.4],
            [0.9, 0.05, 0.0, 0.05],
        ],
        np.float32,
    )
    r = P.topk_fusion(probs, k=3)
    # class 0: mean over all = (0.7+0.1+0.2+0.4+0.9)/5 = 0.46
    # class 1: top-3 mean = (0.1+0.1+0.1)/3 = 0.1; class 2: (0.1+0.1+0.1)/3 = 0.1
    # class 3: top-3 mean = (0.7+0.6+0.4)/3 = 0.5667
    scores = np.array([0.46, 0.1, 0.1, 1.7 / 3])
    np.testing.assert_allclose(r.class_probs, scores / scores.sum(), rtol=1e-5)
    assert r.topk.tolist() == [1, 2, 3]


def test_topk_fusion_fewer_slices_than_k() -> None:
    r = P.topk_fusion(np.array([[0.1, 0.8, 0.05, 0.05], [0.2, 0.6, 0.1, 0.1]]), k=3)
    # class 1: mean of both = 0.7; class 0 = 0.15; class 2 = 0.075; class 3 = 0.075
    np.testing.assert_allclose(r.class_probs, np.array([0.15, 0.7, 0.075, 0.075]) / 1.0, rtol=1e-5)
    assert r.topk.tolist() == [0, 1, 1]


def test_topk_rejects_bad_shape() -> None:
    with pytest.raises(ValueError, match="slice_probs"):
        P.topk_fusion(np.zeros((0, 4)))


def test_stepwise() -> None:
    assert P.stepwise_covid(0.8, 0.5) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="p_viral"):
        P.stepwise_covid(1.5, 0.5)


def test_volume_from_spacing() -> None:
    m = np.zeros((20, 20, 20), np.uint8)
    m[:10, :10, :10] = 1
    assert P.volume_ml(m, (2.0, 0.5, 0.5)) == pytest.approx(0.5)


@pytest.mark.parametrize("bad", [(0.0, 1, 1), (1, -1, 1), (1, 1, float("nan")), (1, 1, float("inf"))])
def test_volume_rejects_bad_spacing(bad: tuple[float, float, float]) -> None:
    with pytest.raises(P.ScanValidationError, match="spacing"):
        P.volume_ml(np.ones((2, 2, 2)), bad)


def test_lesion_statistics_restricts_lesion_to_lung() -> None:
    lung = np.zeros((4, 10, 10), np.uint8)
    lung[:, :5] = 1
    lesion = np.zeros_like(lung)
    lesion[:, 3:7] = 1  # half outside the lung
    st = P.lesion_statistics(lung, lesion, (1.0, 1.0, 1.0))
    assert st.lung_ml == pytest.approx(0.2)
    assert st.lesion_ml == pytest.approx(0.08)
    assert st.ratio == pytest.approx(0.4)
    assert P.lesion_statistics(np.zeros_like(lung), lesion, (1, 1, 1)).ratio == 0.0


def test_dice() -> None:
    a = np.zeros((10, 10))
    a[:5] = 1
    b = np.zeros((10, 10))
    b[:4] = 1
    assert dice(a, b) == pytest.approx(2 * 40 / 90)
    assert dice(np.zeros(3), np.zeros(3)) == 1.0
