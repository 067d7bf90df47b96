"""Windowing, resizing, mask up-sampling, chunking and request validation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from covidet import ensemble as P
from covidet.metrics import dice
from covidet.preprocessing import default_records

RECS = default_records()


def test_lung_input_jin_window() -> None:
    hu = np.array([[[-2000, -1024], [0, 255]]], np.int16)
    rec = replace(RECS["lung_seg"], input_size=(2, 2))
    x = P.lung_input(hu, rec)
    np.testing.assert_allclose(x[0, 0], [[-1024 / 255, -1024 / 255], [0.0, 1.0]], rtol=1e-6)


def test_lesion_input_window() -> None:
    hu = np.array([[[-1500, -1200], [-450, 1000]]], np.int16)
    x = P.lesion_input(hu, replace(RECS["lesion_seg"], input_size=(2, 2)))
    np.testing.assert_allclose(x[0, 0], [[0.0, 0.0], [0.5, 1.0]], rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.float64])
def test_window_after_resize_equals_window_then_resize(dtype: type) -> None:
    # The affine part of the windows is applied on the model-sized slices; the clip stays first.
    rng = np.random.default_rng(0)
    hu = rng.integers(-2000, 1500, (3, 64, 48)).astype(dtype)
    lung, lesion = (
        replace(RECS["lung_seg"], input_size=(16, 24)),
        replace(RECS["lesion_seg"], input_size=(32, 32)),
    )
    lo, hi = lesion.hu_window
    want_lung = P.resize_slices(
        np.maximum(hu.astype(np.float32), lung.hu_min)[:, None] / lung.divisor, (16, 24)
    )
    want_lesion = P.resize_slices(
        ((np.clip(hu.astype(np.float32), lo, hi) - lo) / (hi - lo))[:, None], (32, 32)
    )
    np.testing.assert_allclose(P.lung_input(hu, lung), want_lung, atol=1e-5)
    np.testing.assert_allclose(P.lesion_input(hu, lesion), want_lesion, atol=1e-6)
    assert P.lung_input(hu, lung).dtype == np.float32


def test_device_preprocessing_equals_the_cpu_path(device: str) -> None:
    # The GPU profiles window, resize and up-sample with torch on their device ("cpu" runs the
    # same code here; "cuda" where there is a GPU).
    rng = np.random.default_rng(1)
    hu = rng.integers(-1500, 600, (40, 96, 80)).astype(np.int16)  # two input chunks
    lung, lesion = (
        replace(RECS["lung_seg"], input_size=(24, 20)),
        replace(RECS["lesion_seg"], input_size=(48, 40)),
    )
    np.testing.assert_allclose(P.lung_input(hu, lung, device=device), P.lung_input(hu, lung), atol=1e-5)
    rows = np.array([3, 1, 39, 20])
    np.testing.assert_allclose(
        P.lesion_input(hu, lesion, rows, device=device), P.lesion_input(hu, lesion, rows), atol=1e-6
    )
    on = P.on_device(hu, device)  # the CT copied to the device once, for both inputs
    np.testing.assert_allclose(P.lung_input(on, lung, device=device), P.lung_input(hu, lung), atol=1e-5)
    np.testing.assert_allclose(
        P.lesion_input(on, lesion, rows, device=device), P.lesion_input(hu, lesion, rows), atol=1e-6
    )
    yy, xx = np.mgrid[0:24, 0:20]
    prob = np.stack([1 / (1 + np.exp(-(6 - np.hypot(yy - 12, xx - 9 + z / 8)))) for z in range(40)])
    got = P.upsample_mask(prob.astype(np.float32), (96, 80), device=device)
    want = P.upsample_mask(prob.astype(np.float32), (96, 80))
    assert got.dtype == bool and got.shape == want.shape
    assert np.count_nonzero(got != want) <= 2  # float rounding at the threshold, on the GPU
    if device == "cpu":
        np.testing.assert_array_equal(got, want)


def _blobs(rng: np.random.Generator, n: int, h: int, w: int, clamp: bool) -> np.ndarray:
    """[n,h,w] probabilities: a few soft blobs, anywhere (the slice's borders too), some slices
    empty; ``clamp``: as the lung's, pushed to >= 0.51 or <= 0.49."""
    yy, xx = np.mgrid[0:h, 0:w]
    prob = np.zeros((n, h, w), np.float32)
    for i in range(n):
        for _ in range(int(rng.integers(0, 4))):
            cy, cx = rng.uniform(-2, h + 2), rng.uniform(-2, w + 2)
            r = rng.uniform(0.5, max(h, w) / 3)
            prob[i] = np.maximum(prob[i], 1 / (1 + np.exp(-(r - np.hypot(yy - cy, xx - cx)))))
    prob += rng.uniform(0, 0.05, prob.shape).astype(np.float32)  # noise below the threshold
    if clamp:
        prob = np.where(prob > 0.5, np.maximum(prob, 0.51), np.minimum(prob, 0.49)).astype(np.float32)
    return prob


@pytest.mark.parametrize(
    ("shape", "out_hw"),
    [((8, 32, 32), (128, 128)), ((8, 64, 48), (128, 96)), ((8, 16, 20), (128, 160)), ((8, 24, 24), (80, 72))],
)
@pytest.mark.parametrize("clamp", [False, True])
def test_mask_upsampling_of_the_needed_box_equals_the_whole_slices(
    shape: tuple[int, int, int], out_hw: tuple[int, int], clamp: bool
) -> None:
    """Only the box of cells that can reach the threshold is up-sampled (integer zooms; others,
    e.g. 24 -> 80, take the whole slices): the same masks as up-sampling everything, but where a
    value lies within float rounding of the threshold."""
    rng = np.random.default_rng(sum(shape) + sum(out_hw) + clamp)
    for _ in range(6):
        prob = _blobs(rng, *shape, clamp=clamp)
        values = P.resize_slices(prob, out_hw, antialias=False)
        got = P.upsample_mask(prob, out_hw)
        assert got.dtype == bool and got.shape == (shape[0], *out_hw)
        sure = np.abs(values - 0.5) > 1e-6
        np.testing.assert_array_equal(got[sure], values[sure] > 0.5)
    empty = P.upsample_mask(np.full(shape, 0.2, np.float32), out_hw)
    assert not empty.any()


def test_resize_shapes_and_chunking_of_long_scans() -> None:
    hu = np.zeros((70, 64, 48), np.int16)  # more than one internal chunk, non-square
    x = P.lung_input(hu, replace(RECS["lung_seg"], input_size=(32, 32)))
    assert x.shape == (70, 1, 32, 32) and x.dtype == np.float32


def test_mask_upsampling_round_trip() -> None:
    yy, xx = np.mgrid[0:256, 0:256]
    disk = ((yy - 128) ** 2 + (xx - 100) ** 2 < 60**2).astype(np.float32)[None]
    small = P.resize_slices(disk, (64, 64))
    back = P.prob_to_mask(small, (256, 256))
    assert back.shape == (1, 256, 256) and back.dtype == np.uint8
    assert dice(back, disk) > 0.97


def test_chunks() -> None:
    assert P.chunks(70, 32) == [slice(0, 32), slice(32, 64), slice(64, 70)]
    assert P.chunks(0, 32) == []
    with pytest.raises(ValueError):
        P.chunks(3, 0)


@pytest.mark.parametrize(
    ("ct", "spacing", "message"),
    [
        (np.zeros((4, 32), np.int16), [1, 1, 1], "3D volume"),
        (np.zeros((1, 32, 32), np.float32), [1, 1, 1], "int16"),
        (np.zeros((0, 32, 32), np.int16), [1, 1, 1], "no slices"),
        (np.zeros((1, 8, 32), np.int16), [1, 1, 1], "between 16 and 2048"),
        (np.zeros((1, 32, 32), np.int16), [1, 1], "3 values"),
        (np.zeros((1, 32, 32), np.int16), [1, 0, 1], "row spacing"),
        (np.zeros((1, 32, 32), np.int16), [float("nan"), 1, 1], "slice spacing"),
        (np.zeros((1, 32, 32), np.int16), [100, 1, 1], "implausible"),
        (np.zeros((1, 32, 32), np.int16), [1, 1e-6, 1e-6], "implausible for CT \\(between 0.1 and 50"),
        (np.full((1, 32, 32), 20000, np.int16), [1, 1, 1], "Hounsfield"),
    ],
)
def test_validate_scan_messages(ct: np.ndarray, spacing: list[float], message: str) -> None:
    with pytest.raises(P.ScanValidationError, match=message):
        P.validate_scan(ct, np.asarray(spacing, np.float32))


def test_validate_scan_accepts_a_chest_ct() -> None:
    P.validate_scan(np.full((3, 32, 32), -1000, np.int16), np.array([1, 0.7, 0.7], np.float32))
