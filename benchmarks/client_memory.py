#!/usr/bin/env python
"""What one request costs the caller: a client process sends one 2000x512x512 scan and reports
its peak memory over what it held before (the volume and the imports), in volumes.

    python benchmarks/client_memory.py 127.0.0.1:8001 grpc|http|zstd|shm

``zstd``: gRPC with ``compression="zstd"``; ``shm``: gRPC with the CT through shared memory (a
server on this machine). Run one process per mode: a process's peak (VmHWM) cannot be reset.
See benchmarks/README.md.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from typing import Any

import numpy as np

from covidet.client import Client
from covidet.phantom import make_phantom

MODES = ("grpc", "http", "zstd", "shm")


def _status(key: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def main(argv: list[str]) -> int:
    url, mode = argv
    if mode not in MODES:
        raise SystemExit(f"mode must be one of {MODES}, got {mode!r}")
    hu = np.ascontiguousarray(
        np.resize(make_phantom("COVID-19", n_slices=250, size=512, seed=1).hu, (2000, 512, 512))
    )
    gc.collect()
    options: dict[str, Any] = {"zstd": {"compression": "zstd"}, "shm": {"shared_memory": True}}.get(mode, {})
    with Client(url, protocol="http" if mode == "http" else "grpc", timeout_s=1200, **options) as client:
        client.is_ready()
        before, peak_before = _status("VmRSS"), _status("VmHWM")
        t0 = time.perf_counter()
        client.diagnose(hu, spacing=(0.8, 0.7, 0.7))
        seconds = time.perf_counter() - t0
        peak = _status("VmHWM")
    report = {
        "mode": mode,
        "volume_mib": hu.nbytes / 2**20,
        "rss_before_mib": before / 2**20,
        "peak_before_mib": peak_before / 2**20,  # the peak while building the volume
        "peak_mib": peak / 2**20,
        "extra_volumes": (peak - before) / hu.nbytes,
        "seconds": seconds,
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
