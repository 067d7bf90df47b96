"""Admission bounded by memory: the byte budget as the pipeline's queue bound."""

from __future__ import annotations

import pytest

from covidet.errors import DeploymentError
from covidet.export._admission import (
    DEFAULT_MAX_SCAN_BYTES,
    PROCESSING_FOOTPRINT,
    PROCESSING_OVERHEAD_BYTES,
    WAITING_FOOTPRINT,
    budget_for,
    parse_bytes,
    queue_size,
)

S = DEFAULT_MAX_SCAN_BYTES


@pytest.mark.parametrize(
    ("text", "value"),
    [("1024", 1024), ("8G", 8 << 30), ("512M", 512 << 20), ("1.5GiB", 3 << 29), ("2gb", 2 << 30)],
)
def test_sizes_are_read_in_binary_units(text: str, value: int) -> None:
    assert parse_bytes(text) == value


def test_a_size_that_is_not_one_says_how_to_write_it() -> None:
    with pytest.raises(ValueError, match=r"e\.g\. 8G"):
        parse_bytes("lots")


def test_the_queue_holds_what_the_budget_leaves_after_the_instances_processing() -> None:
    # two instances processing cost 2 x PROCESSING_FOOTPRINT scans; the rest waits
    processing = 2 * (PROCESSING_FOOTPRINT * S + PROCESSING_OVERHEAD_BYTES)
    assert queue_size(int(processing + 6 * WAITING_FOOTPRINT * S), S, 2) == 6
    assert queue_size(int(processing + 6 * WAITING_FOOTPRINT * S) - 1, S, 2) == 5
    assert queue_size(int(processing + 6.5 * WAITING_FOOTPRINT * S), S, 2) == 6


@pytest.mark.parametrize(("waiting", "instances"), [(1, 1), (1, 2), (6, 2), (40, 4)])
def test_budget_for_is_the_smallest_budget_that_lets_that_many_wait(waiting: int, instances: int) -> None:
    budget = budget_for(waiting, S, instances)
    assert queue_size(budget, S, instances) == waiting
    assert waiting == 1 or queue_size(budget - 1, S, instances) == waiting - 1


def test_the_processing_footprint_counts_more_than_the_input() -> None:
    # the Python backend's copy and the working arrays: a processing scan is never one input's worth
    assert PROCESSING_FOOTPRINT > 2 * WAITING_FOOTPRINT >= 2


def test_a_budget_below_one_waiting_scan_is_refused_with_the_minimum() -> None:
    need = budget_for(1, S, 2) / (1 << 30)
    with pytest.raises(DeploymentError, match=rf"at least {need:.2f} GiB"):
        queue_size(2 * S, S, 2)


def test_the_default_budget_of_a_small_machine_still_lets_one_scan_wait_and_says_so() -> None:
    with pytest.warns(UserWarning, match="memory is not bounded by the budget"):
        assert queue_size(S, S, 2, strict=False) == 1
