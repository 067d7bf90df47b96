"""Process resources: freed heap back to the OS, torch's thread count, the usable CPU cores.

A scan allocates and frees a few hundred MB of numpy/torch temporaries. glibc keeps freed heap
pages (in every thread's arena) for reuse, so a pipeline process's resident memory ratchets up
to its worst fragmentation and stays there. `malloc_trim(0)` after a scan hands the free pages
back (a few milliseconds); where glibc is not the C library it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from functools import cache
from pathlib import Path

__all__ = ["limit_torch_threads", "memory_limit_bytes", "release_free_memory", "usable_cores"]


@cache
def _malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    name = ctypes.util.find_library("c")
    try:
        fn = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None
    if fn is not None:
        fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


def release_free_memory() -> bool:
    """Trim the C heap; True when glibc's `malloc_trim` ran and released memory."""
    fn = _malloc_trim()
    return bool(fn(0)) if fn is not None else False


def limit_torch_threads(n: int) -> None:
    """Use ``n`` torch threads (the pipeline resizes with torch): with several pipeline instances
    and the slice models on the same cores, torch's default of one thread per core in every
    process oversubscribes them."""
    if n < 1:
        raise ValueError(f"torch_threads must be >= 1, got {n}")
    import torch

    torch.set_num_threads(n)


#: Where a container's CPU limit shows: cgroup v2 `cpu.max`, or cgroup v1 CFS quota and period.
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _cpu_quota(root: Path) -> float | None:
    """The cgroup CPU limit in cores (e.g. 2.5), or None when there is none."""
    try:
        fields = (root / "cpu.max").read_text().split()  # v2: "max 100000" or "250000 100000"
        if len(fields) == 2 and fields[0] != "max":
            return int(fields[0]) / int(fields[1])
        return None
    except (OSError, ValueError):
        pass
    for v1 in (root / "cpu", root / "cpu,cpuacct"):
        try:
            quota = int((v1 / "cpu.cfs_quota_us").read_text())
            period = int((v1 / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return quota / period if quota > 0 and period > 0 else None
    return None


def usable_cores(root: Path = CGROUP_ROOT) -> int:
    """CPU cores this process may use: its affinity mask, capped by a container's CPU limit (a
    Kubernetes `limits.cpu` is a cgroup quota, invisible to `os.cpu_count()`), at least one.

    Thread and instance counts come from this, so a pod limited to 4 cores on a 64-core node does
    not start 64 ONNX Runtime threads per instance and get throttled.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    quota = _cpu_quota(root)
    if quota is not None:
        cores = min(cores, max(1, int(quota)))
    return max(1, cores)


def memory_limit_bytes(root: Path = CGROUP_ROOT, meminfo: Path = Path("/proc/meminfo")) -> int:
    """Memory this process may use: its container's cgroup limit (v2 ``memory.max``, v1
    ``memory.limit_in_bytes``; a Kubernetes `limits.memory`) when below the node's total memory,
    else the node's total."""
    total = 0
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemTotal:"):
            total = int(line.split()[1]) * 1024
    for name in ("memory.max", "memory/memory.limit_in_bytes"):
        path = root / name
        try:
            value = path.read_text().strip()
        except OSError:
            continue
        if value.isdigit() and 0 < int(value) < total:
            return int(value)
    return total
