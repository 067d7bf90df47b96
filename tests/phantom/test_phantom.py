"""Phantoms: anatomy, class patterns, determinism, resolution independence, writers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from covidet import _contract as C
from covidet import ensemble as P
from covidet.metrics import dice
from covidet.phantom import make_phantom, make_phantom_set


@pytest.mark.parametrize("kind", C.CLASS_NAMES)
def test_shapes_ranges_and_truth(kind: str) -> None:
    ph = make_phantom(kind, n_slices=40, size=(128, 160), seed=3)
    assert ph.hu.shape == ph.lung_mask.shape == ph.lesion_mask.shape == (40, 128, 160)
    assert ph.hu.dtype == np.int16 and ph.lung_mask.dtype == np.uint8
    assert ph.hu.min() >= -1024 and ph.hu.max() > 300  # air to bone
    assert np.median(ph.hu[ph.lung_mask > 0]) < -600  # aerated lung
    assert not (ph.lesion_mask & (1 - ph.lung_mask)).any()  # lesion inside lung
    assert ph.label == C.CLASS_NAMES.index(kind)
    fov, extent = ph.meta["fov_mm"], ph.meta["z_extent_mm"]
    assert ph.spacing == pytest.approx((extent / 40, fov / 128, fov / 160), rel=1e-3)
    fixed = make_phantom(kind, n_slices=40, size=(128, 160), seed=3, fov_mm=360, z_extent_mm=300)
    assert fixed.spacing == pytest.approx((300 / 40, 360 / 128, 360 / 160))


def test_lesion_burden_by_class() -> None:
    ratios = {
        k: [make_phantom(k, n_slices=32, size=96, seed=s).lesion_ratio for s in range(5)]
        for k in C.CLASS_NAMES
    }
    assert max(ratios["non-pneumonia"]) == 0
    for kind in ("CAP", "influenza", "COVID-19"):
        assert all(0.01 < r < 0.35 for r in ratios[kind]), (kind, ratios[kind])


def _mean_depth(ph) -> float:  # mean distance (mm) of lesion voxels from the lung boundary
    depth = np.stack([ndimage.distance_transform_edt(s) for s in ph.lung_mask]) * ph.spacing[1]
    return float(depth[ph.lesion_mask > 0].mean())


def test_covid_is_peripheral_and_influenza_central() -> None:
    covid = np.mean([_mean_depth(make_phantom("COVID-19", n_slices=32, size=128, seed=s)) for s in range(4)])
    flu = np.mean([_mean_depth(make_phantom("influenza", n_slices=32, size=128, seed=s)) for s in range(4)])
    assert covid < flu


def test_cap_is_unilateral_and_covid_bilateral() -> None:
    for seed in range(4):
        cap = make_phantom("CAP", n_slices=32, size=128, seed=seed).lesion_mask
        sides = cap[:, :, :64].sum() > 0, cap[:, :, 64:].sum() > 0
        assert sides.count(True) == 1
        covid = make_phantom("COVID-19", n_slices=32, size=128, seed=seed).lesion_mask
        assert covid[:, :, :64].any() and covid[:, :, 64:].any()


def test_deterministic_and_resolution_independent() -> None:
    a = make_phantom("COVID-19", n_slices=32, size=128, seed=9)
    b = make_phantom("COVID-19", n_slices=32, size=128, seed=9)
    np.testing.assert_array_equal(a.hu, b.hu)
    fine = make_phantom("COVID-19", n_slices=32, size=256, seed=9)
    down = (P.resize_slices(fine.lung_mask.astype(np.float32), (128, 128)) > 0.5).astype(np.uint8)
    assert dice(down, a.lung_mask) > 0.95
    down_l = (P.resize_slices(fine.lesion_mask.astype(np.float32), (128, 128)) > 0.5).astype(np.uint8)
    assert dice(down_l, a.lesion_mask) > 0.85


def test_set_and_bad_kind() -> None:
    s = make_phantom_set(1, seed=0, n_slices=4, size=32)
    assert [p.kind for p in s] == list(C.CLASS_NAMES)
    with pytest.raises(ValueError, match="valid: non-pneumonia, CAP"):
        make_phantom("ARDS")
