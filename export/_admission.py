"""Admission bounded by memory: how many scans the server holds at once, from a byte budget.

Every scan request waits in Triton with its whole input until a `covidet_pipeline` instance takes
it, and an instance takes one at a time (a Python model's ``async execute`` is not handed the next
request before it returns). So the input bytes in flight are at most (instances + queued scans) x
the largest admitted scan. The render turns the operator's budget (``--max-inflight-bytes``) into
the pipeline's queue bound (Triton's ``default_queue_policy.max_queue_size``); a request beyond it
is refused at once with UNAVAILABLE ("Exceeds maximum queue size"), which covidet's client retries
with backoff and jitter, on another replica when it has one. The pipeline refuses a scan larger
than ``--max-scan-bytes``, which keeps the bound true.

Triton's queue rather than a check at the pipeline's door: the door only sees a request once an
instance has taken it, after it has waited in the queue with its bytes. Triton's ensemble
``max_inflight_requests`` would bound the same thing, but the PyPI build (2.51) lacks it.
"""

from __future__ import annotations

import argparse
import re

from covidet.ensemble import memory_limit_bytes
from covidet.errors import DeploymentError

__all__ = [
    "DEFAULT_MAX_SCAN_BYTES",
    "add_admission_options",
    "default_inflight_bytes",
    "parse_bytes",
    "queue_size",
]

#: The largest scan admitted by default: 2000 slices of 512 x 512 int16 (the longest scan the
#: pipeline accepts at the usual in-plane size).
DEFAULT_MAX_SCAN_BYTES = 2000 * 512 * 512 * 2
#: Share of the node's memory that scans in flight may take by default: the rest is the models,
#: the pipeline's working memory and the Python backend's copies of each input.
DEFAULT_MEMORY_SHARE = 0.25

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_bytes(text: str) -> int:
    """``"8G"``, ``"512M"``, ``"1073741824"`` (binary units, an optional ``i``/``B``) -> bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", text)
    if match is None:
        raise ValueError(f"{text!r} is not a size: give bytes, or a number with K, M, G or T (e.g. 8G)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def default_inflight_bytes() -> int:
    """The default budget of scan input bytes in flight: a quarter of `memory_limit_bytes`."""
    return int(memory_limit_bytes() * DEFAULT_MEMORY_SHARE)


def queue_size(max_inflight_bytes: int, max_scan_bytes: int, instances: int, *, strict: bool = True) -> int:
    """Scans that may wait for a pipeline instance so that the ones processing and waiting hold
    at most ``max_inflight_bytes`` of input: the budget in largest scans, less the instances.

    At least one scan waits (Triton reads a bound of 0 as none). A budget too small for that is
    refused when ``strict`` (an operator's figure); otherwise (the default budget of a small
    machine) one waiting scan it is."""
    if max_scan_bytes <= 0 or instances < 1:
        raise DeploymentError(f"max_scan_bytes {max_scan_bytes} and instances {instances} must be positive")
    waiting = max_inflight_bytes // max_scan_bytes - instances
    if waiting < 1 and not strict:
        return 1
    if waiting < 1:
        need = (instances + 1) * max_scan_bytes
        raise DeploymentError(
            f"an in-flight budget of {_gib(max_inflight_bytes)} holds fewer than {instances + 1} scans of "
            f"{_gib(max_scan_bytes)} ({instances} pipeline instances processing, one waiting): give "
            f"--max-inflight-bytes of at least {_gib(need)}, or a smaller --max-scan-bytes"
        )
    return int(waiting)


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.2f} GiB"


def add_admission_options(parser: argparse.ArgumentParser) -> None:
    """``--max-inflight-bytes`` and ``--max-scan-bytes`` (`covidet serve`, `covidet export`)."""
    parser.add_argument(
        "--max-inflight-bytes",
        type=parse_bytes,
        default=None,
        metavar="SIZE",
        help="scan input bytes the server holds at once, processing and waiting (e.g. 8G); beyond "
        "it a scan is refused at once with UNAVAILABLE and the client retries. Default: a quarter "
        "of the memory (the container's limit, else the node's) where the repository is rendered",
    )
    parser.add_argument(
        "--max-scan-bytes",
        type=parse_bytes,
        default=DEFAULT_MAX_SCAN_BYTES,
        metavar="SIZE",
        help="the largest scan admitted, as int16 bytes (default: 2000 slices of 512x512)",
    )
