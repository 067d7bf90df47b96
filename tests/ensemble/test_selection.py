"""Jin et al. slice selection, lung-mask clean-up and classifier input (hand-computed cases)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from covidet import ensemble as P
from covidet.preprocessing import RecordError, default_records

REC = default_records()["slice_classifier"]


def _mask_with_valid(n_valid: int, s: int = 200, offset: int = 10) -> np.ndarray:
    m = np.zeros((s, 64, 64), np.uint8)
    # 64x64 grid: threshold = 500 * 4096 / 262144 = 7.8 pixels -> a 4x4 square (16 px) is valid
    m[offset : offset + n_valid, 10:14, 10:14] = 1
    return m


@pytest.mark.parametrize(
    ("n_valid", "expected"),
    [
        (100, list(range(10, 10 + 70, 2))),  # stride 100 // 35 = 2 -> 0, 2, ..., 68
        (20, list(range(10, 30))),  # fewer than 35 -> all of them
        (70, list(range(10, 80, 2))),  # stride 2 -> exactly 35
        (71, list(range(10, 80, 2))),  # stride 2, first 35
        (105, list(range(10, 115, 3))),  # stride 3
    ],
)
def test_jin_stride_rule_as_a_named_option(n_valid: int, expected: list[int]) -> None:
    sel = P.select_slices(_mask_with_valid(n_valid), replace(REC, selection="jin_stride"))
    assert sel.indices.tolist() == expected
    assert sel.n_valid == n_valid


@pytest.mark.parametrize("n_valid", [20, 35, 36, 69, 70, 71, 100, 105, 190])
def test_even_rule_covers_the_whole_lung(n_valid: int) -> None:
    """The default: 35 slices spread from the first valid slice to the last, both quarters at
    the ends represented (Jin et al.'s rule leaves out up to half of the lung at its lower end)."""
    assert REC.selection == "even"
    sel = P.select_slices(_mask_with_valid(n_valid), REC)
    idx = sel.indices.tolist()
    valid = list(range(10, 10 + n_valid))
    assert len(idx) == min(35, n_valid) and len(set(idx)) == len(idx) and idx == sorted(idx)
    assert set(idx) <= set(valid) and idx[0] == valid[0] and idx[-1] == valid[-1]
    quarter = n_valid // 4
    assert any(i < valid[quarter] for i in idx) and any(i >= valid[-quarter - 1] for i in idx)
    gaps = np.diff(idx)
    assert gaps.max() - gaps.min() <= 1  # evenly spaced
    if n_valid == 69:  # what Jin et al.'s rule gets wrong: the lower half of the lung
        jin = P.select_slices(_mask_with_valid(n_valid), replace(REC, selection="jin_stride"))
        assert jin.indices[-1] < valid[n_valid // 2 + 1]


def test_an_unknown_selection_rule_lists_the_valid_ones() -> None:
    with pytest.raises(RecordError, match="even, jin_stride"):  # refused when the record is read
        replace(REC, selection="random")
    with pytest.raises(KeyError, match="even, jin_stride"):
        P.pick_slices(np.arange(50), 35, "random")


def test_threshold_scales_with_in_plane_area() -> None:
    m = np.zeros((3, 512, 512), np.uint8)
    m[0, :20, :25] = 1  # 500 pixels: not > 500
    m[1, :20, :26] = 1  # 520 pixels
    m[2, :1, :1] = 1
    sel = P.select_slices(m, REC)
    assert sel.indices.tolist() == [1]
    assert sel.bbox == (0, 3, 0, 20, 0, 26)


def test_no_lung_raises_a_clear_error() -> None:
    with pytest.raises(P.NoLungError, match="no lung found"):
        P.select_slices(np.zeros((5, 64, 64), np.uint8), REC)


def test_clean_lung_mask_drops_small_blobs_and_fills_holes() -> None:
    m = np.zeros((10, 64, 64), np.uint8)
    m[1:9, 5:30, 5:25] = 1
    m[1:9, 5:30, 35:55] = 1
    m[4, 15:18, 10:13] = 0  # a vessel-like hole
    m[0, 60:62, 60:62] = 1  # a small blob (trachea-like)
    out = P.clean_lung_mask(m)
    assert out[4, 16, 11] == 1
    assert out[0, 60, 60] == 0
    assert out.sum() == 2 * 8 * 25 * 20


def test_hole_filling_equals_scipy_slice_by_slice() -> None:
    from scipy import ndimage

    from covidet.ensemble._selection import _fill_holes_per_slice

    rng = np.random.default_rng(3)
    masks = rng.random((12, 40, 33)) < 0.55  # many holes, some open to the border, rings in rings
    masks[3] = False
    masks[4] = True
    masks[5, 10:30, 10:25] = True
    masks[5, 15:20, 15:20] = False  # a closed hole
    masks[5, 20:22, 0:12] = False  # a channel to the border: not a hole
    want = np.stack([ndimage.binary_fill_holes(m) for m in masks])
    np.testing.assert_array_equal(_fill_holes_per_slice(masks), want)


def _clean_on_whole_volume(mask: np.ndarray, keep: int = 2, min_fraction: float = 0.05) -> np.ndarray:
    """The clean-up written plainly, on the whole volume: the reference for the cropped one."""
    from scipy import ndimage

    labels, n = ndimage.label(mask > 0)
    if n == 0:
        return np.zeros(mask.shape, np.uint8)
    sizes = np.bincount(labels.ravel())[1:]
    order = np.argsort(sizes)[::-1][:keep]
    order = order[sizes[order] >= min_fraction * sizes[order[0]]]
    kept = np.isin(labels, order + 1)
    return np.stack([ndimage.binary_fill_holes(s) for s in kept]).astype(np.uint8)


def _random_lungs(seed: int, shape: tuple[int, int, int] = (14, 48, 40)) -> np.ndarray:
    """Two "lungs" with holes (some open to the lung's edge) and a smaller third blob at random
    places, sometimes touching the volume's border (so the box meets the edge of the slice), and
    a lone voxel: uint8 [S,H,W]."""
    rng = np.random.default_rng(seed)
    s, h, w = shape
    m = np.zeros(shape, np.uint8)
    for _ in range(3):
        z0, y0, x0 = rng.integers(0, s // 2), rng.integers(0, h - 18), rng.integers(0, w - 16)
        dz, dy, dx = rng.integers(3, s // 2 + 2), rng.integers(6, 19), rng.integers(6, 17)
        m[z0 : z0 + dz, y0 : y0 + dy, x0 : x0 + dx] = 1
    m &= (rng.random(m.shape) < 0.93).astype(np.uint8)  # holes, and ragged edges
    m[rng.integers(0, s), rng.integers(0, h), rng.integers(0, w)] = 1
    return m


@pytest.mark.parametrize("seed", range(6))
def test_clean_lung_mask_on_its_box_equals_the_whole_volume(seed: int) -> None:
    m = _random_lungs(seed)
    np.testing.assert_array_equal(P.clean_lung_mask(m), _clean_on_whole_volume(m))


def test_clean_lung_mask_of_an_empty_mask_is_empty() -> None:
    out = P.clean_lung_mask(np.zeros((3, 8, 8), np.uint8))
    assert out.dtype == np.uint8 and out.shape == (3, 8, 8) and not out.any()


def test_classifier_input_channels_follow_jin() -> None:
    hu = np.full((1, 40, 40), -1200, np.int16)
    hu[0, 10:30, 10:30] = 500  # inside the lung box: max of the window
    mask = np.zeros_like(hu, dtype=np.uint8)
    mask[0, 10:30, 10:30] = 1
    rec = replace(REC, input_size=(20, 20))
    sel = P.select_slices(np.repeat(mask, 1, axis=0), replace(rec, min_lung_pixels=0))
    x = P.classifier_input(hu, mask[sel.indices], sel, rec)
    assert x.shape == (1, 3, 20, 20)
    # cropped to the lung box: the whole crop is lung, slice = 255 (max of window), min 255 -> 0
    # after min-subtraction everything is 0 except the mask channel
    np.testing.assert_allclose(x[0, 0], 1.0, atol=1e-6)
    np.testing.assert_allclose(x[0, 2], 0.0, atol=1e-6)


def test_classifier_input_window_and_min_subtraction() -> None:
    hu = np.full((1, 32, 32), -1200, np.int16)
    hu[0, 0, 0] = 500  # one bright voxel -> 255 after scaling; background -1200 -> 0
    hu[0, 1, 1] = -350  # (-350 clipped) * 255/1700 - (-1200*255/1700) = 127.5
    mask = np.ones_like(hu, dtype=np.uint8)
    rec = replace(REC, input_size=(32, 32), min_lung_pixels=0)
    sel = P.select_slices(mask, rec)
    x = P.classifier_input(hu, mask[sel.indices], sel, rec)
    assert x[0, 2, 0, 0] == pytest.approx(1.0, abs=1e-6)
    assert x[0, 2, 1, 1] == pytest.approx(127 / 255, abs=1e-6)
    assert x[0, 2, 5, 5] == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(x[0, 1], x[0, 2])  # mask = 1 -> mask*slice = slice


def test_mask_summary_built_slab_by_slab_selects_like_the_whole_mask() -> None:
    rng = np.random.default_rng(0)
    mask = (rng.random((30, 64, 48)) > 0.995).astype(np.uint8)
    mask[5:25, 20:40, 10:30] = 1
    summary = P.MaskSummary.empty(mask.shape)
    for part in P.chunks(30, 7):
        summary.add(np.arange(30)[part], mask[part])
    whole = P.MaskSummary.of(mask)
    np.testing.assert_array_equal(summary.counts, mask.reshape(30, -1).sum(axis=1))
    np.testing.assert_array_equal(summary.rows, whole.rows)
    np.testing.assert_array_equal(summary.cols, mask.any(axis=(0, 1)))
    np.testing.assert_array_equal(summary.masks(np.arange(30)), mask > 0)  # kept, bit-packed
    np.testing.assert_array_equal(summary.masks([7, 3]), mask[[7, 3]] > 0)
    assert not P.MaskSummary.empty(mask.shape).masks(slice(0, 2)).any()  # never added: empty
    a, b = P.select_slices(summary, REC), P.select_slices(mask, REC)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert (a.bbox, a.n_valid) == (b.bbox, b.n_valid)


def test_classifier_input_wants_the_masks_of_the_selected_slices() -> None:
    mask = _mask_with_valid(20)
    sel = P.select_slices(mask, REC)
    with pytest.raises(ValueError, match="20 selected slices"):
        P.classifier_input(np.zeros(mask.shape, np.int16), mask, sel, REC)


def test_mask_summary_and_lesion_fold_on_a_device_equal_the_cpu_path(device: str) -> None:
    # The GPU profiles up-sample, count, pack and fold on the device; "cpu" runs that torch path.
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:20, 0:15]
    lung = np.stack([1 / (1 + np.exp(-(5 - np.hypot(yy - 10, xx - 7 + z / 4)))) for z in range(12)])
    lesion = (rng.random((12, 20, 15)) * lung).astype(np.float32)  # lesions inside the lung
    lung = lung.astype(np.float32)
    rows = np.arange(12)
    cpu, dev = P.MaskSummary.empty((12, 60, 45)), P.MaskSummary.empty((12, 60, 45))  # 2700 px: not /8
    cpu.add_probabilities(rows[:7], lung[:7])
    cpu.add_probabilities(rows[7:], lung[7:])
    dev.add_probabilities(rows[:7], lung[:7], device=device)
    dev.add_probabilities(rows[7:], lung[7:], device=device)
    assert cpu.counts.sum() > 0
    if device == "cpu":  # bit-exact (on a GPU, float rounding at the threshold may differ)
        for a, b in ((cpu.counts, dev.counts), (cpu.rows, dev.rows), (cpu.cols, dev.cols)):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(cpu.packed, dev.packed)
    np.testing.assert_array_equal(dev.masks(rows[3:9], device=device).cpu().numpy(), dev.masks(rows[3:9]))
    hu = rng.integers(-1000, 200, (12, 60, 45)).astype(np.int16)
    want = P.fold_lesions(cpu, rows[2:10], lesion[2:10], hu, want_masks=True)
    got = P.fold_lesions(
        dev, rows[2:10], lesion[2:10], P.on_device(hu, device), want_masks=True, device=device
    )
    assert (
        want.lung is not None and want.lesion is not None and got.lung is not None and got.lesion is not None
    )
    assert want.n_lesion > 0 and abs(got.n_lung - want.n_lung) <= 4 and abs(got.n_lesion - want.n_lesion) <= 4
    assert np.count_nonzero(got.lung != want.lung) <= 4 and np.count_nonzero(got.lesion != want.lesion) <= 4
    assert not (want.lesion & ~want.lung).any() and not (got.lesion & ~got.lung).any()
    assert want.lung_hu_sum == float(hu[2:10][want.lung].sum())
    if device == "cpu":
        assert (got.n_lung, got.n_lesion, got.lung_hu_sum) == (want.n_lung, want.n_lesion, want.lung_hu_sum)
    plain = P.fold_lesions(dev, rows[2:10], lesion[2:10], P.on_device(hu, device), device=device)
    assert (plain.n_lung, plain.n_lesion) == (got.n_lung, got.n_lesion)
    assert plain.lung is None and plain.lesion is None


def test_lesions_outside_the_lung_envelope_are_cut() -> None:
    """A lesion probability over the whole slice (GGO-like density in the body wall included)
    gives a lesion only where the lung envelope is."""
    lung = np.zeros((3, 40, 40), np.float32)
    lung[:, 10:30, 8:18] = 1.0
    summary = P.MaskSummary.empty((3, 40, 40))
    summary.add_probabilities(np.arange(3), lung)
    everywhere = np.ones((3, 40, 40), np.float32)
    got = P.fold_lesions(summary, np.arange(3), everywhere, np.zeros((3, 40, 40), np.int16), want_masks=True)
    np.testing.assert_array_equal(got.lesion, lung > 0)
    np.testing.assert_array_equal(got.lung, lung > 0)  # the lung is not grown by the lesion
    assert got.n_lung == got.n_lesion == 3 * 20 * 10


def test_envelope_closing_takes_in_a_notch_at_the_pleura_and_fills_holes() -> None:
    m = np.zeros((2, 60, 60), np.uint8)
    m[:, 10:50, 10:30] = 1
    m[:, 25:29, 10:13] = 0  # a consolidation at the pleura the lung model left out: a notch
    m[:, 20:24, 20:24] = 0  # a dense lesion inside: a hole
    plain = P.clean_lung_mask(m)
    assert plain[0, 22, 22] == 1 and plain[0, 27, 11] == 0  # the hole is filled, the notch is not
    closed = P.clean_lung_mask(m, closing=2)
    full = np.zeros_like(m)
    full[:, 10:50, 10:30] = 1
    np.testing.assert_array_equal(closed, full)  # the notch is taken in; nothing grows outside
    assert P.closing_radius((1.0, 0.7, 0.7), (512, 512), (128, 128)) == round(5.0 / 2.8)


def test_classifier_input_on_a_device_equals_the_cpu_path(device: str) -> None:
    rng = np.random.default_rng(8)
    hu = rng.integers(-1400, 700, (30, 80, 72)).astype(np.int16)
    mask = np.zeros(hu.shape, np.uint8)
    mask[4:26, 15:60, 10:62] = rng.random((22, 45, 52)) < 0.9
    rec = replace(REC, input_size=(40, 36), min_lung_pixels=0)
    sel = P.select_slices(mask, replace(rec, n_slices=9))
    want = P.classifier_input(hu, mask[sel.indices], sel, rec)
    got = P.classifier_input(P.on_device(hu, device), mask[sel.indices], sel, rec, device=device)
    assert got.shape == want.shape and got.dtype == np.float32
    # the same float32 operations; on a GPU a uint8 truncation may land one level apart
    np.testing.assert_allclose(got, want, atol=1e-6 if device == "cpu" else 1.01 / 255)


@pytest.mark.parametrize("seed", range(6))
def test_clean_lung_mask_on_a_device_equals_numpy(seed: int, device: str) -> None:
    import torch

    m = _random_lungs(seed, (12, 40, 36))
    for closing in (0, 1, 3):
        got = P.clean_lung_mask(P.on_device(m > 0, device), closing=closing, device=device)
        assert got.dtype == torch.bool and got.device.type == device
        want = P.clean_lung_mask(m, closing=closing)
        np.testing.assert_array_equal(got.cpu().numpy().astype(np.uint8), want)
    assert not P.clean_lung_mask(np.zeros((2, 5, 5), bool), device=device).any()


@pytest.mark.parametrize("device", [None, "cpu"])
def test_a_hole_larger_than_a_tenth_of_the_slices_lung_is_not_filled(device: str | None) -> None:
    """Lungs that meet around the mediastinum, or ring the diaphragm's dome, make holes that are
    not lung; a vessel or a lesion inside the lung is a small hole, and lung."""
    m = np.zeros((2, 60, 60), bool)
    m[0, 5:55, 5:55] = True
    m[0, 12:48, 12:48] = False  # a ring around a dome: hole 1296 px, ring 1204 px
    m[1, 5:55, 5:55] = True
    m[1, 25:31, 25:31] = False  # a vessel or a dense lesion: a small hole (36 of 2464 px)
    got = P.clean_lung_mask(m, device=device)
    got = got.cpu().numpy() if device else got.view(bool)
    np.testing.assert_array_equal(got[0], m[0])  # the dome stays out
    assert got[1, 5:55, 5:55].all()  # the small hole is lung
    m[1, 20:36, 20:36] = False  # 256 of 2244 px: more than a tenth, not filled
    got = P.clean_lung_mask(m, device=device)
    got = got.cpu().numpy() if device else got.view(bool)
    assert not got[1, 20:36, 20:36].any()
