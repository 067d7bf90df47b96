"""`covidet soak`: bounded load for N minutes; failures, latency drift and server memory growth."""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from covidet.bench._levels import _Clients
from covidet.bench._load import run_closed_loop
from covidet.bench._plan import _scans
from covidet.server._procs import tree_memory_mib

__all__ = ["main_soak", "soak_report"]


def soak_report(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals, failures, p50 drift (last window vs first) and RSS/PSS growth over the run."""
    requests = sum(w["requests"] for w in windows)
    failures = sum(w["errors"] for w in windows)
    p50 = [w["latency_p50_s"] for w in windows if w["ok"]]
    rss = [w["rss_mib"] for w in windows if w.get("rss_mib")]
    pss = [w["pss_mib"] for w in windows if w.get("pss_mib")]
    return {
        "windows": len(windows),
        "requests": requests,
        "failures": failures,
        "latency_p50_first_s": p50[0] if p50 else None,
        "latency_p50_last_s": p50[-1] if p50 else None,
        "latency_drift": (p50[-1] / p50[0] - 1.0) if len(p50) > 1 else 0.0,
        "rss_first_mib": rss[0] if rss else None,
        "rss_last_mib": rss[-1] if rss else None,
        "rss_growth_mib": (rss[-1] - rss[0]) if len(rss) > 1 else 0.0,
        "pss_first_mib": pss[0] if pss else None,
        "pss_last_mib": pss[-1] if pss else None,
        "pss_growth_mib": (pss[-1] - pss[0]) if len(pss) > 1 else 0.0,
    }


def main_soak(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="covidet soak", description=__doc__)
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--window", type=float, default=30.0, help="seconds per reporting window")
    p.add_argument("--url", default=None, help="server to load (default: start one here)")
    p.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    p.add_argument("--slices", type=int, default=64)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--scans", type=int, default=4)
    p.add_argument("--folder", default=None)
    p.add_argument("--masks", action="store_true")
    p.add_argument("--shared-memory", action="store_true", help="the CT through /dev/shm (local server)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    scans = _scans(args)
    server = None
    tmp = tempfile.TemporaryDirectory()
    url = args.url
    windows: list[dict[str, Any]] = []
    make_fn: _Clients | None = None
    try:
        if url is None:
            from covidet.export._render import render_repository
            from covidet.server import TritonServer

            repo = render_repository("cpu", Path(tmp.name) / "repo")
            server = TritonServer.on_free_ports(repo)
            server.start()
            server.wait_ready(timeout=600)
            url = server.grpc_url if args.protocol == "grpc" else server.http_url
        make_fn = _Clients(url, args.protocol, args.masks, args.shared_memory)
        make_fn()(scans[0])  # warm-up
        n = max(1, int(np.ceil(args.minutes * 60 / args.window)))
        for i in range(n):
            res = run_closed_loop(make_fn, scans, args.concurrency, args.window)
            make_fn.close()
            s = res.summary()
            s.pop("server", None)
            mem = tree_memory_mib(server.pid) if server and server.pid else {}
            s["rss_mib"], s["pss_mib"] = mem.get("rss_mib"), mem.get("pss_mib")
            windows.append(s)
            print(
                f"window {i + 1}/{n}: {s['ok']} ok, {s['errors']} failed, p50 "
                f"{s['latency_p50_s']:.2f} s, server RSS {s['rss_mib'] or 0:.0f} MiB, "
                f"PSS {s['pss_mib'] or 0:.0f} MiB",
                flush=True,
            )
    finally:
        if make_fn is not None:
            make_fn.close()
        if server:
            server.stop()
        tmp.cleanup()
    summary = soak_report(windows)
    report: dict[str, Any] = {"summary": summary, "windows": windows}
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=float))
    return 1 if summary["failures"] else 0
