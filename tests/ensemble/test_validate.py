"""The request's CT volume: CT or CT_COMPRESSED, exactly one, a bad frame an input error."""

from __future__ import annotations

import numpy as np
import pytest

from covidet._codec import encode_volume
from covidet.ensemble import ScanValidationError, classify_error, scan_volume

HU = np.full((3, 32, 32), -1000, np.int16)


def test_ct_or_its_frame_gives_the_same_volume() -> None:
    assert scan_volume(HU, None) is HU
    np.testing.assert_array_equal(scan_volume(None, np.array([encode_volume(HU)], dtype=object)), HU)


@pytest.mark.parametrize(
    ("ct", "frame", "message"),
    [
        (None, None, "got neither"),
        (HU, np.array([encode_volume(HU)], dtype=object), "got both"),
        (None, np.array([b"not a frame at all, really"], dtype=object), "not a covidet frame"),
        (None, np.array([encode_volume(HU)] * 2, dtype=object), "one frame"),
        (None, np.array([encode_volume(HU[:, :8, :8])], dtype=object), "between 16 and 2048"),
    ],
)
def test_a_bad_request_volume_is_an_invalid_argument(
    ct: np.ndarray | None, frame: np.ndarray | None, message: str
) -> None:
    with pytest.raises(ScanValidationError, match=message) as info:
        scan_volume(ct, frame)
    code, text = classify_error(info.value)
    assert code == "INVALID_ARG" and "[covidet:INVALID_VOLUME]" in text


def test_a_scan_over_the_servers_limit_is_refused_before_it_is_decoded() -> None:
    big = np.full((40, 64, 64), -1000, np.int16)
    limit = big.nbytes - 1
    with pytest.raises(ScanValidationError, match="larger than this server admits"):
        scan_volume(None, np.array([encode_volume(big)], dtype=object), max_bytes=limit)
    from covidet.ensemble import validate_scan

    with pytest.raises(ScanValidationError, match="--max-scan-bytes"):
        validate_scan(big, np.ones(3, np.float32), max_bytes=limit)
    validate_scan(big[:39], np.ones(3, np.float32), max_bytes=limit)  # under it: fine (air only)


def test_the_scan_length_is_bounded_by_bytes_not_by_a_slice_count() -> None:
    from covidet.ensemble import validate_scan
    from covidet.ensemble._validate import MAX_SLICES

    long_thin = np.full((MAX_SLICES + 500, 16, 16), -1000, np.int16)  # a long scan of small slices
    one_mm = np.ones(3, np.float32)
    validate_scan(long_thin, one_mm, max_bytes=long_thin.nbytes)  # within the server's limit: fine
    with pytest.raises(ScanValidationError, match="--max-scan-bytes"):
        validate_scan(long_thin, one_mm, max_bytes=long_thin.nbytes - 1)
    with pytest.raises(ScanValidationError, match=f"at most {MAX_SLICES}"):  # no limit set: the count
        validate_scan(long_thin, one_mm)
