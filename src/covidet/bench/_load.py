"""Load generation against a running covidet server: closed loop and open loop."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from covidet import _contract as C

__all__ = ["LevelResult", "Sample", "Scan", "run_closed_loop", "run_open_loop", "server_stats_delta"]


@dataclass(frozen=True)
class Scan:
    hu: np.ndarray
    spacing: tuple[float, float, float]
    name: str


@dataclass(frozen=True)
class Sample:
    start: float
    latency_s: float
    ok: bool
    slices: int
    error: str = ""
    #: in-process baselines: the pipeline's wall time per stage (lung, classify_and_lesion,
    #: fusion, total), as the served pipeline reports it in its metrics
    stages: dict[str, float] | None = None
    #: --end-to-end: the scan's parts in seconds (read, request, total; served and transfer where
    #: Triton's statistics split them for this request) and its request/response payload bytes
    parts: dict[str, float] | None = None


@dataclass
class LevelResult:
    mode: str  # "closed" or "open"
    level: float  # concurrency, or requests/s
    duration_s: float
    samples: list[Sample] = field(default_factory=list)
    server: dict[str, Any] = field(default_factory=dict)
    peak_rss_mib: float | None = None
    peak_pss_mib: float | None = None
    #: peak PSS without the clients' CT shared-memory regions that the server maps
    peak_own_pss_mib: float | None = None
    #: CPU seconds the server's processes used over the level, by process (a local server only)
    server_cpu_s: dict[str, float] | None = None
    #: --end-to-end: p50/p95/mean of each part of a scan (see `covidet.bench._e2e.summarise`)
    end_to_end: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        ok = [s for s in self.samples if s.ok]
        lat = np.array([s.latency_s for s in ok])

        def pct(q: float) -> float:  # NaN when no scan succeeded (the errors say why)
            return float(np.percentile(lat, q)) if lat.size else float("nan")

        errors: dict[str, int] = {}
        for s in self.samples:
            if not s.ok:
                errors[s.error] = errors.get(s.error, 0) + 1
        staged = [s.stages for s in ok if s.stages]
        stages = {k: float(np.mean([st[k] for st in staged])) for k in staged[0]} if staged else None
        cpu = None
        if self.server_cpu_s is not None and ok:
            most_first = sorted(self.server_cpu_s.items(), key=lambda kv: -kv[1])
            cpu = {k: round(v / len(ok), 4) for k, v in most_first}
        return {
            "mode": self.mode,
            "level": self.level,
            "requests": len(self.samples),
            "ok": len(ok),
            "errors": len(self.samples) - len(ok),
            "error_kinds": errors,
            "duration_s": round(self.duration_s, 3),
            "latency_p50_s": pct(50),
            "latency_p90_s": pct(90),
            "latency_p99_s": pct(99),
            "latency_mean_s": float(lat.mean()) if lat.size else float("nan"),
            "scans_per_s": len(ok) / self.duration_s if self.duration_s else 0.0,
            "slices_per_s": sum(s.slices for s in ok) / self.duration_s if self.duration_s else 0.0,
            "peak_server_rss_mib": self.peak_rss_mib,
            "peak_server_pss_mib": self.peak_pss_mib,
            "peak_server_own_pss_mib": self.peak_own_pss_mib,
            "stages_mean_s": stages,
            #: the server's CPU seconds per scan answered (all its processes; the cores a scan/s
            #: costs), and by process: tritonserver and each stub's model
            "server_cpu_s_per_scan": round(sum(cpu.values()), 4) if cpu is not None else None,
            "server_cpu_s_per_scan_by_process": cpu,
            "server": self.server,
            **({"end_to_end": self.end_to_end} if self.end_to_end is not None else {}),
        }

    def to_json(self) -> dict[str, Any]:
        return {"summary": self.summary(), "samples": [asdict(s) for s in self.samples]}


DiagnoseFn = Callable[[Scan], None]


def _timed(fn: DiagnoseFn, scan: Scan, start: float | None = None) -> Sample:
    t0 = time.perf_counter() if start is None else start
    try:
        fn(scan)
        return Sample(t0, time.perf_counter() - t0, True, scan.hu.shape[0])
    except Exception as exc:  # recorded, never dropped
        return Sample(t0, time.perf_counter() - t0, False, scan.hu.shape[0], type(exc).__name__)


def run_closed_loop(
    make_fn: Callable[[], DiagnoseFn],
    scans: Sequence[Scan],
    concurrency: int,
    duration_s: float,
    *,
    on_sample: Callable[[Sample], None] | None = None,
) -> LevelResult:
    """``concurrency`` workers, each sending its next scan as soon as the previous one returns."""
    stop_at = time.perf_counter() + duration_s
    samples: list[Sample] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        fn = make_fn()
        i = k
        while time.perf_counter() < stop_at:
            s = _timed(fn, scans[i % len(scans)])
            i += concurrency
            with lock:
                samples.append(s)
            if on_sample:
                on_sample(s)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    return LevelResult("closed", concurrency, time.perf_counter() - t0, samples)


def run_open_loop(
    make_fn: Callable[[], DiagnoseFn],
    scans: Sequence[Scan],
    rate: float,
    duration_s: float,
    *,
    seed: int = 0,
    max_in_flight: int = 64,
    on_sample: Callable[[Sample], None] | None = None,
) -> LevelResult:
    """Poisson arrivals at ``rate`` scans/s; latency counts from the scheduled arrival."""
    rng = random.Random(seed)
    local = threading.local()
    samples: list[Sample] = []
    lock = threading.Lock()

    def send(scan: Scan, scheduled: float) -> None:
        if not hasattr(local, "fn"):
            local.fn = make_fn()
        s = _timed(local.fn, scan, start=scheduled)
        with lock:
            samples.append(s)
        if on_sample:
            on_sample(s)

    t0 = time.perf_counter()
    next_at = t0
    i = 0
    with ThreadPoolExecutor(max_in_flight) as pool:
        while next_at < t0 + duration_s:
            delay = next_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(send, scans[i % len(scans)], next_at)
            i += 1
            next_at += rng.expovariate(rate)
    return LevelResult("open", rate, time.perf_counter() - t0, samples)


def _model_stats(stats: dict[str, Any]) -> dict[str, dict[str, float]]:
    out = {}
    for m in stats.get("model_stats", []):
        inf = m.get("inference_stats", {})

        def ns(key: str, inf: dict[str, Any] = inf) -> float:
            return float(inf.get(key, {}).get("ns", 0))

        out[m["name"]] = {
            "requests": float(inf.get("success", {}).get("count", 0)),
            "failures": float(inf.get("fail", {}).get("count", 0)),
            "inferences": float(m.get("inference_count", 0)),
            "executions": float(m.get("execution_count", 0)),
            "queue_ns": ns("queue"),
            "compute_input_ns": ns("compute_input"),
            "compute_infer_ns": ns("compute_infer"),
            "compute_output_ns": ns("compute_output"),
        }
    return out


def server_stats_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Per model: requests, executions, average batch, queue and compute ms per request."""
    b, a = _model_stats(before), _model_stats(after)
    out: dict[str, Any] = {}
    for name, now in a.items():
        prev = b.get(name, dict.fromkeys(now, 0.0))
        d = {k: now[k] - prev.get(k, 0.0) for k in now}
        req = d["requests"]
        if req <= 0:
            continue
        out[name] = {
            "requests": int(req),
            "failures": int(d["failures"]),
            "executions": int(d["executions"]),
            "avg_batch": d["inferences"] / d["executions"] if d["executions"] else 0.0,
            "queue_ms_per_request": d["queue_ns"] / req / 1e6,
            "compute_ms_per_request": (d["compute_input_ns"] + d["compute_infer_ns"] + d["compute_output_ns"])
            / req
            / 1e6,
        }
    order = [s.name for s in C.all_models()]
    return dict(sorted(out.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99))
