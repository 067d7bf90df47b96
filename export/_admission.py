"""Admission bounded by memory: how many scans the server holds at once, from a byte budget.

Every scan request waits in Triton until a `covidet_pipeline` instance takes it, and an instance
takes one at a time (a Python model's ``async execute`` is not handed the next request before it
returns). The budget (``--max-inflight-bytes``) counts what the server holds for the scans it has
admitted, in multiples of the largest admitted scan's input bytes (``--max-scan-bytes``):

- a scan being processed costs `PROCESSING_FOOTPRINT` (the request's bytes in Triton, the Python
  backend's copy of the input, the pipeline's working arrays: lung probabilities, masks) and
  `PROCESSING_OVERHEAD_BYTES` (slice batches in flight, the slice models' activations);
- a scan waiting costs `WAITING_FOOTPRINT`: its request, held by Triton (nothing through shared
  memory, where the client's region holds it).

Both were measured on the largest scan over gRPC, the costliest transport
(benchmarks/admission_burst.py; figures in benchmarks/README.md). The render turns the budget into
the pipeline's queue bound (Triton's ``default_queue_policy.max_queue_size``): the budget less the
instances' processing footprint, in waiting scans. A request beyond it is refused at once with
UNAVAILABLE ("Exceeds maximum queue size"), which covidet's client retries with backoff and
jitter, on another replica when it has one. The pipeline refuses a scan larger than
``--max-scan-bytes``, which keeps the bound true.

Triton's queue rather than a check at the pipeline's door: the door only sees a request once an
instance has taken it, after it has waited in the queue with its bytes. Triton's ensemble
``max_inflight_requests`` would bound the same thing, but the PyPI build (2.51) lacks it. The
bound counts every scan as the largest: a server that only ever sees 300-slice scans admits more
of them with a smaller ``--max-scan-bytes``.
"""

from __future__ import annotations

import argparse
import math
import re
import warnings

from covidet.ensemble import memory_limit_bytes
from covidet.errors import DeploymentError

__all__ = [
    "DEFAULT_MAX_SCAN_BYTES",
    "PROCESSING_FOOTPRINT",
    "PROCESSING_OVERHEAD_BYTES",
    "WAITING_FOOTPRINT",
    "add_admission_options",
    "budget_for",
    "default_inflight_bytes",
    "parse_bytes",
    "queue_size",
]

#: The largest scan admitted by default: 2000 slices of 512 x 512 int16 (the longest scan the
#: pipeline accepts at the usual in-plane size).
DEFAULT_MAX_SCAN_BYTES = 2000 * 512 * 512 * 2
#: Share of the node's memory that admitted scans may take by default, processing and waiting
#: (the footprints below count their working memory too): the rest is the loaded models and
#: head-room for the allocator and the OS.
DEFAULT_MEMORY_SHARE = 0.6
#: Memory a scan holds in the server while an instance processes it, in input bytes (measured:
#: see the module's docstring).
PROCESSING_FOOTPRINT = 4.5
#: Memory an instance adds while it processes, whatever the scan's size: its slice batches in
#: flight and the slice models' activations (measured as for the footprint, on small scans).
PROCESSING_OVERHEAD_BYTES = 256 << 20
#: Memory a scan holds in the server while it waits for an instance, in input bytes.
WAITING_FOOTPRINT = 1.0

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_bytes(text: str) -> int:
    """``"8G"``, ``"512M"``, ``"1073741824"`` (binary units, an optional ``i``/``B``) -> bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", text)
    if match is None:
        raise ValueError(f"{text!r} is not a size: give bytes, or a number with K, M, G or T (e.g. 8G)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def default_inflight_bytes() -> int:
    """The default budget of memory for admitted scans: `DEFAULT_MEMORY_SHARE` of `memory_limit_bytes`."""
    return int(memory_limit_bytes() * DEFAULT_MEMORY_SHARE)


def queue_size(max_inflight_bytes: int, max_scan_bytes: int, instances: int, *, strict: bool = True) -> int:
    """Scans that may wait for a pipeline instance so that the scans processing and waiting hold
    at most ``max_inflight_bytes``: the budget less what the instances hold processing the largest
    scan, in `WAITING_FOOTPRINT` of it.

    At least one scan waits (Triton reads a bound of 0 as none). A budget too small for that is
    refused when ``strict`` (an operator's figure); otherwise (the default budget of a small
    machine) one waiting scan it is."""
    if max_scan_bytes <= 0 or instances < 1:
        raise DeploymentError(f"max_scan_bytes {max_scan_bytes} and instances {instances} must be positive")
    left = max_inflight_bytes - instances * _processing(max_scan_bytes)
    waiting = int(left // (WAITING_FOOTPRINT * max_scan_bytes))
    if waiting >= 1:
        return waiting
    need = budget_for(1, max_scan_bytes, instances)
    message = (
        f"an in-flight budget of {_gib(max_inflight_bytes)} cannot hold {instances} pipeline "
        f"instances processing scans of {_gib(max_scan_bytes)} (each costs the server about "
        f"{PROCESSING_FOOTPRINT:g} times its input bytes and {PROCESSING_OVERHEAD_BYTES >> 20} MiB) "
        f"and one waiting: give --max-inflight-bytes of at least {_gib(need)}, or a smaller "
        "--max-scan-bytes"
    )
    if strict:
        raise DeploymentError(message)
    # the default budget of a small node: serve, but say that the largest scans may not fit
    warnings.warn(f"{message} (one scan may wait; memory is not bounded by the budget)", stacklevel=2)
    return 1


def budget_for(waiting: int, max_scan_bytes: int, instances: int) -> int:
    """The smallest budget for which `queue_size` lets ``waiting`` scans wait (tests, docs)."""
    return math.ceil(instances * _processing(max_scan_bytes) + waiting * WAITING_FOOTPRINT * max_scan_bytes)


def _processing(max_scan_bytes: int) -> float:
    """What one instance processing the largest scan holds."""
    return PROCESSING_FOOTPRINT * max_scan_bytes + PROCESSING_OVERHEAD_BYTES


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.2f} GiB"


def add_admission_options(parser: argparse.ArgumentParser) -> None:
    """``--max-inflight-bytes`` and ``--max-scan-bytes`` (`covidet serve`, `covidet export`)."""
    parser.add_argument(
        "--max-inflight-bytes",
        type=parse_bytes,
        default=None,
        metavar="SIZE",
        help="memory the server may hold for scans at once, processing and waiting (e.g. 8G); beyond "
        "it a scan is refused at once with UNAVAILABLE and the client retries. Default: 60%% of the "
        "memory (the container's limit, else the node's) where the repository is rendered",
    )
    parser.add_argument(
        "--max-scan-bytes",
        type=parse_bytes,
        default=DEFAULT_MAX_SCAN_BYTES,
        metavar="SIZE",
        help="the largest scan admitted, as int16 bytes (default: 2000 slices of 512x512)",
    )
