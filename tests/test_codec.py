"""The CT_COMPRESSED frame (`covidet._codec`): lossless, compact on CT, and a bad frame is refused
before it costs memory."""

from __future__ import annotations

import numpy as np
import pytest

from covidet._codec import FrameError, decode_volume, encode_volume, frame_shape
from covidet.phantom import make_phantom


def test_round_trip_is_lossless_and_at_least_halves_a_phantom() -> None:
    hu = make_phantom("COVID-19", n_slices=24, size=128, seed=3).hu
    frame = encode_volume(hu)
    assert frame_shape(frame) == hu.shape
    back = decode_volume(frame, max_voxels=hu.size)
    assert back.dtype == np.int16 and back.flags.c_contiguous
    np.testing.assert_array_equal(back, hu)
    assert len(frame) <= hu.nbytes / 2


def test_extreme_values_and_odd_shapes_survive() -> None:
    rng = np.random.default_rng(0)
    hu = rng.integers(-32768, 32767, size=(3, 17, 31), dtype=np.int16)
    hu[0, 0, :2] = (-32768, 32767)
    np.testing.assert_array_equal(decode_volume(encode_volume(hu, threads=0), max_voxels=hu.size), hu)


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda f: f[:12], "shorter than a frame"),
        (lambda f: b"XXXX" + f[4:], "not a covidet frame"),
        (lambda f: f[:4] + b"\x02" + f[5:], "only int16"),
        (lambda f: f[:-6], "corrupt|truncated"),
        (lambda f: f[:30] + bytes(len(f) - 30), "corrupt|truncated"),
        (lambda f: f[:8] + np.array([4, 16, 17], "<u4").tobytes() + f[20:], "needs|corrupt"),
    ],
)
def test_a_bad_frame_says_what_is_wrong(mangle: object, message: str) -> None:
    import re

    hu = np.full((4, 16, 16), -1000, np.int16)
    hu[:, 4:12, 4:12] = 40
    frame = mangle(encode_volume(hu))  # type: ignore[operator]
    with pytest.raises(FrameError) as info:
        decode_volume(frame, max_voxels=10**6)
    assert re.search(message, str(info.value))


def test_a_frame_stating_more_than_allowed_is_refused_before_decompressing() -> None:
    frame = encode_volume(np.zeros((2, 16, 16), np.int16))
    huge = frame[:8] + np.array([100_000, 4096, 4096], "<u4").tobytes() + frame[20:]
    with pytest.raises(FrameError, match="at most"):
        decode_volume(huge, max_voxels=2000 * 2048 * 2048)


def test_only_int16_volumes_are_encoded() -> None:
    with pytest.raises(FrameError, match="int16"):
        encode_volume(np.zeros((2, 16, 16), np.float32))
