"""`benchmarks/bench.py` / `covidet bench`: load-test a covidet server and compare with baselines."""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from covidet import _contract as C
from covidet.bench._load import (
    DiagnoseFn,
    LevelResult,
    Scan,
    run_closed_loop,
    run_open_loop,
    server_stats_delta,
)
from covidet.export._render import TORCH_COMPILE_MODES
from covidet.server._procs import listening_pid, tree_cpu_seconds, tree_memory_mib

__all__ = ["BASELINES", "main"]

#: (a) PyTorch eager per slice, (b) ONNX Runtime in-process, (c) Triton's perf_analyzer,
#: PyTorch batched in-process (FP16 on CUDA): the GPU profiles' floor, and the pipeline's own
#: pre/post-processing on one core (model outputs replayed): the CPU a GPU node needs per scan/s.
BASELINES = ("naive", "onnx", "perf_analyzer", "torch", "prepost")


def _scans(args: argparse.Namespace) -> list[Scan]:
    if args.folder:
        from covidet.client import load_volume

        paths = sorted(p for p in Path(args.folder).iterdir() if p.is_dir() or p.name.endswith(".nii.gz"))
        vols = [load_volume(p) for p in paths]
        return [Scan(v.hu, v.spacing, v.source) for v in vols]
    from covidet.phantom import make_phantom

    return [
        Scan(ph.hu, ph.spacing, f"{ph.kind}-{args.slices}x{args.size}")
        for ph in (
            make_phantom(C.CLASS_NAMES[i % 4], n_slices=args.slices, size=args.size, seed=900 + i)
            for i in range(args.scans)
        )
    ]


class _RssSampler:
    def __init__(self, pid: int | None) -> None:
        self.pid, self.peak, self.peak_pss, self.peak_own = pid, 0.0, 0.0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set() and self.pid:
            mem = tree_memory_mib(self.pid)
            self.peak = max(self.peak, mem["rss_mib"])
            self.peak_pss = max(self.peak_pss, mem["pss_mib"])
            self.peak_own = max(self.peak_own, mem["own_pss_mib"])
            self._stop.wait(0.5)

    def __enter__(self) -> _RssSampler:
        if self.pid:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.pid:
            self._thread.join()


class _Clients:
    """Makes one client per load worker (each worker calls it once) and closes them all at the end
    (a shared-memory client removes its /dev/shm region when closed)."""

    def __init__(self, url: str, protocol: str, masks: bool, shm: bool = False) -> None:
        self.url, self.protocol, self.masks, self.shm = url, protocol, masks, shm
        self._made: list[Any] = []
        self._lock = threading.Lock()

    def __call__(self) -> DiagnoseFn:
        from covidet.client import Client

        client = Client(self.url, protocol=self.protocol, timeout_s=600, retries=0, shared_memory=self.shm)
        with self._lock:
            self._made.append(client)

        def fn(scan: Scan) -> None:
            client.diagnose(scan.hu, spacing=scan.spacing, return_masks=self.masks)

        return fn

    def close(self) -> None:
        with self._lock:
            for client in self._made:
                client.close()
            self._made.clear()


def _stats(url: str, protocol: str) -> dict[str, Any]:
    if protocol == "grpc":
        import tritonclient.grpc as grpcclient

        return dict(grpcclient.InferenceServerClient(url).get_inference_statistics(as_json=True))
    import tritonclient.http as httpclient

    return dict(httpclient.InferenceServerClient(url).get_inference_statistics())


def _print(results: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for col in (
        "mode",
        "level",
        "ok",
        "errors",
        "p50 s",
        "p90 s",
        "p99 s",
        "scans/s",
        "slices/s",
        "peak RSS MiB",
        "peak PSS MiB",
        "own PSS MiB",
        "server CPU s/scan",
    ):
        t.add_column(col, justify="right")
    for r in results:
        rss, pss = r.get("peak_server_rss_mib"), r.get("peak_server_pss_mib")
        own, cpu = r.get("peak_server_own_pss_mib"), r.get("server_cpu_s_per_scan")
        t.add_row(
            r["mode"],
            f"{r['level']:g}",
            "-" if r["ok"] is None else str(r["ok"]),
            str(r["errors"]),
            f"{r['latency_p50_s']:.3f}",
            f"{r['latency_p90_s']:.3f}",
            f"{r['latency_p99_s']:.3f}",
            f"{r['scans_per_s']:.3f}",
            f"{r['slices_per_s']:.1f}",
            f"{rss:.0f}" if rss else "-",
            f"{pss:.0f}" if pss else "-",
            f"{own:.0f}" if own else "-",
            f"{cpu:.2f}" if cpu is not None else "-",
        )
    Console().print(t)
    for r in results:
        if r.get("server"):
            s = Table(title=f"Triton per-model breakdown, {r['mode']} {r['level']:g}")
            cpu_by = r.get("server_cpu_s_per_scan_by_process") or {}
            cols = ("model", "requests", "executions", "avg batch", "queue ms/req", "compute ms/req")
            for col in (*cols, "CPU s/scan"):
                s.add_column(col, justify="right")
            for name, m in r["server"].items():
                s.add_row(
                    name,
                    str(m["requests"]),
                    str(m["executions"]),
                    f"{m['avg_batch']:.1f}",
                    f"{m['queue_ms_per_request']:.1f}",
                    f"{m['compute_ms_per_request']:.1f}",
                    f"{cpu_by[name]:.3f}" if name in cpu_by else "-",
                )
            for name in ("tritonserver", "other"):
                if name in cpu_by:
                    s.add_row(f"({name})", "", "", "", "", "", f"{cpu_by[name]:.3f}")
            Console().print(s)


def _plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mode in sorted({r["mode"] for r in results}):
        rs = [r for r in results if r["mode"] == mode]
        ax.plot([r["scans_per_s"] for r in rs], [r["latency_p50_s"] for r in rs], "o-", label=f"{mode} p50")
        ax.plot([r["scans_per_s"] for r in rs], [r["latency_p99_s"] for r in rs], "x--", label=f"{mode} p99")
    ax.set_xlabel("throughput (scans/s)")
    ax.set_ylabel("latency per scan (s)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _cpu_info() -> dict[str, Any]:
    """CPU model and the vector extensions that decide float and int8 kernel speed."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {"cpu_model": platform.processor()}
    fields = {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in text.splitlines()) if v}
    flags = set(fields.get("flags", "").split())
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
    return {"cpu_model": fields.get("model name", ""), "cpu_vector": [f for f in wanted if f in flags]}


def _torch_device(choice: str, gpu_profile: bool) -> str:
    """Device of the torch baselines: as asked, or (auto) CUDA for GPU profiles when present."""
    if choice != "auto":
        return choice
    if not gpu_profile:
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.py", description=__doc__)
    p.add_argument("--url", default=None, help="server gRPC/HTTP address (default: start one)")
    p.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    p.add_argument("--profile", default="cpu", help="profile of the server started by bench")
    p.add_argument(
        "--checkpoints",
        type=Path,
        default=None,
        help="checkpoint folder (default: the demo models; `covidet init-checkpoints` writes full-size ones)",
    )
    p.add_argument(
        "--torch-compile",
        choices=TORCH_COMPILE_MODES,
        default="reduce-overhead",
        help="gpu-torch: torch.compile mode of the slice models (none: eager, no compile time)",
    )
    p.add_argument(
        "--torch-device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="device of the naive and torch baselines (auto: cuda for GPU profiles when present)",
    )
    p.add_argument(
        "--concurrency",
        default="1,2,4",
        help="closed-loop levels, e.g. 1,2,4,8,16 ('' with no --rate: no server)",
    )
    p.add_argument("--rate", default="", help="open-loop levels in scans/s, e.g. 0.5,1")
    p.add_argument("--duration", type=float, default=20.0, help="seconds per level")
    p.add_argument("--warmup", type=int, default=2, help="warm-up scans before measuring")
    p.add_argument("--slices", type=int, default=300)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--scans", type=int, default=4, help="distinct phantom scans in the workload")
    p.add_argument("--folder", default=None, help="use the DICOM/NIfTI scans in this folder instead")
    p.add_argument("--masks", action="store_true", help="request masks (more transfer)")
    p.add_argument(
        "--shared-memory",
        action="store_true",
        help="clients pass the CT through system shared memory (server on this machine)",
    )
    p.add_argument("--compare", default="", help="baselines: " + ",".join(BASELINES))
    p.add_argument("--baseline-scans", type=int, default=3)
    p.add_argument("--flops", action="store_true", help="report FLOPs per scan and achieved FLOP/s")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--csv", type=Path, default=None)
    p.add_argument("--png", type=Path, default=None)
    p.add_argument(
        "--server-log",
        type=Path,
        default=None,
        help="keep the log of the server bench starts here (its warnings: e.g. a GPU fallback)",
    )
    args = p.parse_args(argv)

    from rich.console import Console
    from rich.progress import Progress

    console = Console(stderr=True)
    compare = [c for c in args.compare.split(",") if c]
    unknown = sorted(set(compare) - set(BASELINES))
    if unknown:
        raise SystemExit(f"unknown baseline(s) {unknown}; choose from {', '.join(BASELINES)}")
    scans = _scans(args)
    levels = [("closed", float(c)) for c in args.concurrency.split(",") if c]
    levels += [("open", float(r)) for r in args.rate.split(",") if r]
    from covidet.export._render import (
        CPU_PROFILES,
        checkpoint_metadata,
        default_checkpoints,
        render_repository,
    )

    checkpoints = args.checkpoints or default_checkpoints()
    device = _torch_device(args.torch_device, args.profile not in CPU_PROFILES)
    report: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            **_cpu_info(),
        },
        "server": {
            "profile": None if args.url else args.profile,
            "url_given": args.url is not None,
            "checkpoints": {n: m.get("variant") for n, m in checkpoint_metadata(checkpoints).items()},
            "torch_baseline_device": device,
        },
        "workload": {
            "scans": [s.name for s in scans],
            "slices": scans[0].hu.shape[0],
            "shape": list(scans[0].hu.shape),
            "masks": args.masks,
        },
        "command": "bench.py " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        "levels": [],
        "baselines": [],
    }
    tmp = tempfile.TemporaryDirectory()
    # the served repository (its pipeline.json also configures the in-process baselines); the
    # ONNX baseline needs ONNX graphs, which only the CPU profiles have
    profile = args.profile if not args.url else "cpu"
    repo = render_repository(profile, Path(tmp.name) / "repo", checkpoints, torch_compile=args.torch_compile)
    server = None
    url = args.url
    make_fn: _Clients | None = None
    try:
        if url is None and levels:
            from covidet.server import TritonServer

            server = TritonServer.on_free_ports(repo, log_file=args.server_log)
            server.start()
            with console.status("starting Triton..."):
                server.wait_ready(timeout=600)
            url = server.grpc_url if args.protocol == "grpc" else server.http_url
        # memory and CPU of a server on this machine, started by bench or not (another user's
        # processes cannot be read: then none)
        server_pid = server.pid if server else listening_pid(url) if url else None
        if levels:
            make_fn = _Clients(url, args.protocol, args.masks, args.shared_memory)
            warm = make_fn()
            for i in range(args.warmup):
                warm(scans[i % len(scans)])
        with Progress(console=console) as progress:
            for mode, level in levels:
                task = progress.add_task(f"{mode} {level:g}", total=args.duration)
                t0 = time.perf_counter()

                def tick(_: Any, task: Any = task, t0: float = t0) -> None:
                    progress.update(task, completed=min(args.duration, time.perf_counter() - t0))

                assert url is not None and make_fn is not None
                before = _stats(url, args.protocol)
                cpu_before = tree_cpu_seconds(server_pid) if server_pid else None
                with _RssSampler(server_pid) as rss:
                    if mode == "closed":
                        res: LevelResult = run_closed_loop(
                            make_fn, scans, int(level), args.duration, on_sample=tick
                        )
                    else:
                        res = run_open_loop(make_fn, scans, level, args.duration, on_sample=tick)
                make_fn.close()  # this level's clients (and their shared-memory regions)
                res.server = server_stats_delta(before, _stats(url, args.protocol))
                if cpu_before is not None and server_pid:
                    cpu_after = tree_cpu_seconds(server_pid)
                    # >= 0: a stub restarted during the level starts its count again
                    res.server_cpu_s = {k: max(0.0, v - cpu_before.get(k, 0.0)) for k, v in cpu_after.items()}
                res.peak_rss_mib = rss.peak or None
                res.peak_pss_mib = rss.peak_pss or None
                res.peak_own_pss_mib = rss.peak_own or None
                progress.update(task, completed=args.duration)
                report["levels"].append(res.to_json())
        if "perf_analyzer" in compare and url:  # (c) needs the server: run it before stopping it
            from covidet.bench._perf_analyzer import run_perf_analyzer

            closed = [int(level) for mode, level in levels if mode == "closed"] or [1]
            with console.status("baseline perf_analyzer..."):
                rows = run_perf_analyzer(
                    url, scans[0], closed, protocol=args.protocol, window_s=args.duration
                )
            report["baselines"].extend({"summary": row, "samples": []} for row in rows)
    finally:
        if make_fn is not None:
            make_fn.close()
        if server:
            server.stop()
    from covidet.bench import _baselines as B

    for name in compare:
        if name == "perf_analyzer":
            continue
        with console.status(f"baseline {name}..."):
            if name == "naive":
                res = B.run_naive(checkpoints, repo, scans, args.baseline_scans, device=device)
            elif name == "torch":
                res = B.run_torch(checkpoints, repo, scans, args.baseline_scans, device=device)
            elif name == "prepost":  # the served profile's pre/post; GPU ones record with torch
                gpu = profile not in CPU_PROFILES
                res = B.run_prepost(
                    repo, scans, args.baseline_scans, checkpoints=checkpoints if gpu else None, device=device
                )
            elif profile in CPU_PROFILES:
                res = B.run_onnx(repo, scans, args.baseline_scans)
            else:  # the same checkpoints' ONNX graphs, rendered for the CPU
                res = B.run_onnx(
                    render_repository("cpu", Path(tmp.name) / "cpu", checkpoints), scans, args.baseline_scans
                )
        report["baselines"].append(res.to_json())
    if args.flops:
        f = B.flops_per_scan(checkpoints, scans[0])
        peak = B.measure_peak_flops(device=device)
        best = max((r["summary"]["scans_per_s"] for r in report["levels"]), default=0.0)
        report["flops"] = {
            **f,
            "machine_peak_flops": peak,
            "peak_measured_on": f"{device} ({'fp32' if device == 'cpu' else 'fp16'} matmul)",
            "achieved_flops_server": f["per_scan"] * best,
            "fraction_of_peak": f["per_scan"] * best / peak,
            "achieved_flops_baselines": {
                r["summary"]["mode"]: f["per_scan"] * float(r["summary"].get("scans_per_s") or 0.0)
                for r in report["baselines"]
            },
        }
    tmp.cleanup()
    summaries = [r["summary"] for r in report["levels"] + report["baselines"]]
    _print(summaries, f"covidet bench: {report['workload']['shape']} scans, {args.protocol}")
    for row in summaries:  # where an in-process scan's time goes, stage by stage
        if row.get("stages_mean_s"):
            parts = ", ".join(f"{k} {v:.3f}" for k, v in row["stages_mean_s"].items())
            console.print(f"{row['mode']}: mean s a scan by stage: {parts}")
    if "flops" in report and report["levels"]:
        f = report["flops"]
        console.print(
            f"FLOPs per scan {f['per_scan'] / 1e9:.1f} G; machine peak {f['machine_peak_flops'] / 1e9:.0f}"
            f" GFLOP/s; server achieved {f['achieved_flops_server'] / 1e9:.1f} GFLOP/s "
            f"({100 * f['fraction_of_peak']:.1f}% of peak)"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=float))
    if args.csv:
        with args.csv.open("w", newline="") as fh:
            nested = ("server", "error_kinds", "stages_mean_s", "server_cpu_s_per_scan_by_process")
            keys = [k for k in summaries[0] if k not in nested]
            w = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
            w.writeheader()
            w.writerows(summaries)
    if args.png:
        _plot(summaries, args.png)
    return 1 if any(s["errors"] for s in summaries) else 0
