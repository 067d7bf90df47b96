"""The explanation's post-processing: class maps onto the input grid, Jin et al.'s regions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from covidet._contract import Explanation
from covidet.ensemble._explain import MIN_REGION_PX, attention_on_grid, attention_regions


def test_the_map_is_put_back_on_the_lung_box_of_the_input_grid() -> None:
    maps = np.full((2, 8, 8), -3.0, np.float32)
    maps[0, 2, 5] = 4.0  # one hot cell; slice 1 has no positive attention at all
    box = (40, 120, 16, 176)  # rows 40..120, columns 16..176 of a 200 x 200 grid
    att = attention_on_grid(maps, box, (200, 200))
    assert att.shape == (2, 200, 200) and att.dtype == np.uint8
    assert att[0].max() == 255 and not att[1].any()
    assert not att[0, :40].any() and not att[0, 120:].any() and not att[0, :, :16].any()
    row, col = np.unravel_index(int(np.argmax(att[0])), (200, 200))
    # cell (2, 5) of an 8 x 8 grid covers rows 40 + [20, 30) and columns 16 + [100, 120)
    assert 60 <= row < 70 and 116 <= col < 136


def test_regions_follow_jin_et_al_size_rule_and_measure_the_lesion_overlap() -> None:
    h = w = 224  # a lung box the size of the classifier's input: 200 px is 200 px
    att = np.zeros((1, h, w), np.uint8)
    att[0, 20:40, 20:40] = 255  # 400 px: kept
    att[0, 100:110, 100:110] = 200  # 100 px: under the rule
    att[0, 150:170, 150:180] = 60  # below half the peak: not attention
    lung = np.ones((1, h, w), bool)
    lesion = np.zeros((1, h, w), bool)
    lesion[0, 30:50, 20:40] = True  # covers half of the kept region
    regions = attention_regions(att, [17], lung, lesion, (0.7, 0.7), (h, w), (0, h, 0, w))
    assert len(regions) == 1
    (region,) = regions
    assert region.slice == 17 and region.rank == 0
    assert region.area_px == 400 and np.isclose(region.area_mm2, 400 * 0.7 * 0.7)
    assert region.lesion_overlap_px == 200 and region.lesion_overlap == 0.5
    assert region.bbox == (20, 40, 20, 40)
    assert region.centroid == (29.5, 29.5)
    explanation = Explanation("grad-cam", tuple(regions))
    data = json.loads(explanation.to_json())
    assert data["method"] == "grad-cam"
    assert data["regions"][0]["area_px"] == 400 and data["regions"][0]["bbox"] == [20, 40, 20, 40]
    assert Explanation.from_json(explanation.to_json()) == explanation


def test_regions_far_outside_the_lung_are_not_attention() -> None:
    h = w = 224
    att = np.zeros((1, h, w), np.uint8)
    att[0, 10:40, 10:40] = 255  # body wall, far from the lung
    lung = np.zeros((1, h, w), bool)
    lung[0, 120:200, 120:200] = True
    assert attention_regions(att, [3], lung, lung, (0.7, 0.7), (h, w), (0, h, 0, w)) == []


def test_the_size_rule_scales_with_the_lung_box() -> None:
    # the same 300-pixel region is over the rule on a 224 box, under it on a box twice as wide
    att = np.zeros((1, 448, 448), np.uint8)
    att[0, 10:25, 10:30] = 255
    lung = np.ones((1, 448, 448), bool)
    none = np.zeros_like(lung)
    small_box = attention_regions(att, [0], lung, none, (1.0, 1.0), (224, 224), (0, 224, 0, 224))
    big_box = attention_regions(att, [0], lung, none, (1.0, 1.0), (224, 224), (0, 448, 0, 448))
    assert [r.area_px for r in small_box] == [300] and 300 > MIN_REGION_PX
    assert big_box == []


def test_an_explanation_names_a_known_method() -> None:
    with pytest.raises(ValueError, match="expected one of"):
        Explanation("saliency")
