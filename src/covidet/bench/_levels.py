"""bench's levels: the server (started here or given), and each closed- or open-loop level run
against it with Triton's per-model statistics, the server's CPU time and its peak memory."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from covidet.bench import _e2e as e2e
from covidet.bench._load import (
    DiagnoseFn,
    LevelResult,
    Scan,
    run_closed_loop,
    run_open_loop,
    server_stats_delta,
)
from covidet.server._procs import listening_pid, tree_cpu_seconds, tree_memory_mib

if TYPE_CHECKING:
    from rich.console import Console

    from covidet.bench._plan import Plan

__all__ = ["run_levels", "serving"]


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

    def __init__(
        self, url: str, protocol: str, masks: bool, shm: bool = False, explain: bool = False
    ) -> None:
        self.url, self.protocol, self.masks, self.shm = url, protocol, masks, shm
        self.explain = explain
        self._made: list[Any] = []
        self._lock = threading.Lock()

    def __call__(self) -> DiagnoseFn:
        from covidet.client import Client

        client = Client(self.url, protocol=self.protocol, timeout_s=600, retries=0, shared_memory=self.shm)
        with self._lock:
            self._made.append(client)

        def fn(scan: Scan) -> None:
            client.diagnose(scan.hu, spacing=scan.spacing, return_masks=self.masks, explain=self.explain)

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


@contextmanager
def serving(plan: Plan, repo: Path, console: Console) -> Iterator[tuple[str | None, int | None]]:
    """``(url, pid)`` of the server: ``--url``'s, or (with levels to run) a Triton started here on
    ``repo`` and stopped after; the pid where the server runs on this machine (memory and CPU of
    another user's processes cannot be read: then None)."""
    args = plan.args
    server = None
    url = args.url
    try:
        if url is None and plan.levels:
            from covidet.server import TritonServer

            server = TritonServer.on_free_ports(repo, log_file=args.server_log)
            server.start()
            with console.status("starting Triton..."):
                server.wait_ready(timeout=600)
            url = server.grpc_url if args.protocol == "grpc" else server.http_url
        yield url, server.pid if server else listening_pid(url) if url else None
    finally:
        if server:
            server.stop()


def run_levels(plan: Plan, url: str | None, server_pid: int | None, console: Console) -> list[dict[str, Any]]:
    """Warm up, then each level of the plan for ``--duration`` seconds; a report row per level."""
    from rich.progress import Progress

    args, scans = plan.args, plan.scans
    rows: list[dict[str, Any]] = []
    make_fn: _Clients | None = None
    try:
        if plan.levels:
            assert url is not None
            # (--end-to-end levels make their own asyncio clients: these stay unmade)
            make_fn = _Clients(url, args.protocol, args.masks, args.shared_memory, args.explain)
            if args.end_to_end and args.warmup:  # read from disk and served, as its levels' scans
                e2e.run_closed_loop_e2e(url, args, plan.sources, 1, 0.0, warmup=args.warmup)
            elif args.warmup:
                warm = make_fn()
                for i in range(args.warmup):
                    warm(scans[i % len(scans)])
        with Progress(console=console) as progress:
            for mode, level in plan.levels:
                task = progress.add_task(f"{mode} {level:g}", total=args.duration)
                t0 = time.perf_counter()

                def tick(_: Any, task: Any = task, t0: float = t0) -> None:
                    progress.update(task, completed=min(args.duration, time.perf_counter() - t0))

                assert url is not None and make_fn is not None
                before = _stats(url, args.protocol)
                cpu_before = tree_cpu_seconds(server_pid) if server_pid else None
                with _RssSampler(server_pid) as rss:
                    if mode == "closed" and args.end_to_end:
                        res: LevelResult = e2e.run_closed_loop_e2e(
                            url, args, plan.sources, int(level), args.duration, on_sample=tick
                        )
                    elif mode == "closed":
                        res = run_closed_loop(make_fn, scans, int(level), args.duration, on_sample=tick)
                    else:
                        res = run_open_loop(make_fn, scans, level, args.duration, on_sample=tick)
                make_fn.close()  # this level's clients (and their shared-memory regions)
                after = _stats(url, args.protocol)
                res.server = server_stats_delta(before, after)
                if args.end_to_end:
                    res.end_to_end = e2e.summarise(res, e2e.server_mean_s(before, after), args)
                if cpu_before is not None and server_pid:
                    cpu_after = tree_cpu_seconds(server_pid)
                    # >= 0: a stub restarted during the level starts its count again
                    res.server_cpu_s = {k: max(0.0, v - cpu_before.get(k, 0.0)) for k, v in cpu_after.items()}
                res.peak_rss_mib = rss.peak or None
                res.peak_pss_mib = rss.peak_pss or None
                res.peak_own_pss_mib = rss.peak_own or None
                progress.update(task, completed=args.duration)
                rows.append(res.to_json())
    finally:
        if make_fn is not None:
            make_fn.close()
    return rows
