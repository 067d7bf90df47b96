#!/usr/bin/env python
"""A burst of huge scans against a server with an admission budget: every scan answered, and what
the server's own memory rose to against the budget.

    python benchmarks/admission_burst.py --scans 6 --slices 2000 --size 512 \
        --max-inflight-bytes 12G --json benchmarks/results/admission-burst.json

Starts a cpu server here (the repository rendered with the budget), sends ``--scans`` scans at
once from as many threads, each through its own /dev/shm region (``--transport shm``, so this
process does not hold GBs of request copies) or over gRPC, with the client's retries (refusals
are retried with backoff), and samples the server's memory every 0.25 s: the own PSS of
tritonserver and every stub (PSS less the clients' CT regions the server maps), from its level
after one warm-up scan of the same size (the level the server keeps once it has served one; the
rise the warm-up itself caused is reported beside it). ``--scans 1``
measures what one scan costs while it is processed: the footprint the admission formula counts
(``covidet.export._admission.PROCESSING_FOOTPRINT``). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from covidet.client import Client
from covidet.export._admission import parse_bytes
from covidet.export._render import render_repository
from covidet.phantom import make_phantom
from covidet.server import TritonServer
from covidet.server._procs import PeakMemory


def _volume(slices: int, size: int) -> np.ndarray:
    """A phantom of ``slices`` x ``size``², tiled from a short one (making a 2000-slice phantom
    directly takes minutes; the pipeline's work does not depend on the content)."""
    base = make_phantom("COVID-19", n_slices=min(slices, 250), size=size, seed=1).hu
    return np.ascontiguousarray(np.resize(base, (slices, size, size)))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scans", type=int, default=6)
    p.add_argument("--slices", type=int, default=2000)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--transport", choices=["shm", "grpc"], default="shm")
    p.add_argument("--max-inflight-bytes", type=parse_bytes, default=None, metavar="SIZE")
    p.add_argument(
        "--max-scan-bytes",
        type=parse_bytes,
        default=None,
        metavar="SIZE",
        help="default: the burst's scan size",
    )
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    hu = _volume(args.slices, args.size)
    max_scan = args.max_scan_bytes or hu.nbytes
    with tempfile.TemporaryDirectory() as tmp:
        repo = render_repository(
            "cpu", Path(tmp) / "repo", max_inflight_bytes=args.max_inflight_bytes, max_scan_bytes=max_scan
        )
        config = (repo / "covidet_pipeline" / "config.pbtxt").read_text()
        waiting = int(config.split("max_queue_size:")[1].split()[0])
        server = TritonServer.on_free_ports(repo)
        server.start()
        try:
            server.wait_ready(timeout=600)
            assert server.pid is not None

            def one(i: int) -> tuple[float, float, str]:
                t0 = time.perf_counter()
                with Client(
                    server.grpc_url,
                    timeout_s=1800,
                    retries=60,
                    backoff_s=1.0,
                    max_backoff_s=15.0,
                    shared_memory=args.transport == "shm",
                ) as client:
                    try:
                        d = client.diagnose(hu, spacing=(0.8, 0.7, 0.7))
                        return time.perf_counter() - t0, d.lung_volume_ml, ""
                    except Exception as exc:  # reported, never dropped
                        return time.perf_counter() - t0, float("nan"), f"{type(exc).__name__}: {exc}"

            cold = PeakMemory(server.pid)
            with cold:  # warm-up: one scan first, so the slice models' batches and the pools have grown
                one(-1)
            time.sleep(2.0)
            t0 = time.perf_counter()
            with PeakMemory(server.pid) as peak, ThreadPoolExecutor(args.scans) as pool:
                results = list(pool.map(one, range(args.scans)))
            wall = time.perf_counter() - t0
        finally:
            server.stop()
    gib = 1 << 30
    budget = args.max_inflight_bytes
    report: dict[str, Any] = {
        "command": "benchmarks/admission_burst.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k != "json"
        ),
        "scans": args.scans,
        "scan_gib": hu.nbytes / gib,
        "transport": args.transport,
        "budget_gib": budget / gib if budget else None,
        "max_queue_size": waiting,
        "answered": sum(1 for r in results if not r[2]),
        "errors": [r[2] for r in results if r[2]],
        "latencies_s": [round(r[0], 1) for r in results],
        "wall_s": round(wall, 1),
        "server_own_pss_cold_gib": cold.baseline_mib / 1024,
        "warmup_growth_gib": cold.growth_mib / 1024,
        "server_own_pss_baseline_gib": peak.baseline_mib / 1024,
        "server_own_pss_peak_gib": peak.peak_mib / 1024,
        "server_own_pss_growth_gib": peak.growth_mib / 1024,
        "growth_in_scans": peak.growth_mib * (1 << 20) / hu.nbytes,
        "growth_by_process_gib": {
            name: round((peak.peak_by_process[name] - peak.baseline_by_process.get(name, 0.0)) / 1024, 3)
            for name in sorted(peak.peak_by_process)
        },
        "samples": peak.samples,
    }
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0 if not report["errors"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
