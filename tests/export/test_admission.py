"""Admission bounded by memory: the byte budget as the pipeline's queue bound."""

from __future__ import annotations

import pytest

from covidet.errors import DeploymentError
from covidet.export._admission import DEFAULT_MAX_SCAN_BYTES, parse_bytes, queue_size


@pytest.mark.parametrize(
    ("text", "value"),
    [("1024", 1024), ("8G", 8 << 30), ("512M", 512 << 20), ("1.5GiB", 3 << 29), ("2gb", 2 << 30)],
)
def test_sizes_are_read_in_binary_units(text: str, value: int) -> None:
    assert parse_bytes(text) == value


def test_a_size_that_is_not_one_says_how_to_write_it() -> None:
    with pytest.raises(ValueError, match=r"e\.g\. 8G"):
        parse_bytes("lots")


def test_the_queue_holds_what_the_budget_leaves_after_the_instances() -> None:
    # 8 largest scans fit in the budget; 2 are being processed, 6 may wait
    assert queue_size(8 * DEFAULT_MAX_SCAN_BYTES, DEFAULT_MAX_SCAN_BYTES, 2) == 6
    assert queue_size(8 * DEFAULT_MAX_SCAN_BYTES + 1, DEFAULT_MAX_SCAN_BYTES, 2) == 6


def test_a_budget_below_one_waiting_scan_is_refused_with_the_minimum() -> None:
    with pytest.raises(DeploymentError, match=r"at least 2\.93 GiB"):
        queue_size(2 * DEFAULT_MAX_SCAN_BYTES, DEFAULT_MAX_SCAN_BYTES, 2)


def test_the_default_budget_of_a_small_machine_still_lets_one_scan_wait() -> None:
    assert queue_size(DEFAULT_MAX_SCAN_BYTES, DEFAULT_MAX_SCAN_BYTES, 2, strict=False) == 1
