"""bench's end-to-end mode (``--end-to-end``): each scan from its files on disk to the answer.

Per scan it times the read (`covidet.client.load_volume` on the DICOM folder or NIfTI file, in a
worker thread, as `covidet diagnose` reads), the request round trip (`AsyncClient.diagnose`: the
upload, the server's work, the answer) and the total. Triton's statistics of the `covidet`
ensemble split the round trip into the server's part (from the request's arrival in Triton to
its answer: queue and compute) and the rest, called transfer here (serialising, the wire and
the gRPC/HTTP frontends, both ways). That split is per request when one request is in flight
(closed loop at concurrency 1: the statistics are read before and after each request); with
more in flight the requests overlap in the counters, so the level gets the means only.

Files are read again for every scan: no volume is cached. The OS page cache still is: after the
first read a series comes from memory, unless ``--evict-cache`` asks the kernel to drop each
scan's files (``posix_fadvise(DONTNEED)``, no root needed) before it is read.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from covidet import _contract as C
from covidet.bench._load import LevelResult, Sample

__all__ = [
    "PARTS",
    "evict_from_page_cache",
    "read_timed",
    "run_closed_loop_e2e",
    "server_mean_s",
    "summarise",
    "write_phantom_series",
]

#: the parts of a scan's time, in the order the table shows them
PARTS = ("read_s", "request_s", "served_s", "transfer_s", "total_s")


def write_phantom_series(phantoms: Sequence[Any], folder: Path) -> list[Path]:
    """Each phantom as a DICOM series in its own folder under ``folder`` (one file a slice)."""
    from covidet.phantom import write_dicom_series

    out = []
    for i, ph in enumerate(phantoms):
        path = folder / f"{i:02d}-{ph.kind.replace(' ', '_')}"
        write_dicom_series(ph, path)
        out.append(path)
    return out


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def evict_from_page_cache(path: Path) -> None:
    """Ask the kernel to drop ``path``'s files (a folder: all its files) from the page cache, so
    that their next read comes from the disk. Written pages are flushed first (the kernel keeps
    dirty pages). Under a hypervisor the host may still cache the disk."""
    for f in _files(path):
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def read_timed(path: Path, evict: bool = False) -> tuple[Any, float]:
    """(`Volume`, seconds) of one read of ``path`` with covidet's reader; evicted first if asked
    (not timed)."""
    from covidet.client import load_volume

    if evict:
        evict_from_page_cache(path)
    t0 = time.perf_counter()
    vol = load_volume(path)
    return vol, time.perf_counter() - t0


def _payload_bytes(inp: Any) -> int:
    """Bytes of one tritonclient InferInput's data in the request (0 for a shared-memory input)."""
    raw = inp._get_content() if hasattr(inp, "_get_content") else inp._get_binary_data()
    return len(raw) if raw else 0


def _response_bytes(result: Any) -> int:
    """Bytes of the answer as it came over the wire (gRPC: the response message; HTTP: its
    binary outputs)."""
    if hasattr(result, "get_response") and hasattr(result.get_response(), "ByteSize"):
        return int(result.get_response().ByteSize())
    buf = getattr(result, "_buffer", None)
    return len(buf) if buf else 0


#: the (request payload bytes, response bytes) of the current scan's requests
_WIRE: contextvars.ContextVar[list[tuple[int, int]] | None] = contextvars.ContextVar("wire", default=None)


def _count_bytes(client: Any) -> None:
    """Wrap ``client``'s request so that each one adds (request payload bytes, response bytes) to
    the current task's `_WIRE` list: what the CT costs on the wire, whatever form the client sends
    it in (array, compressed frame, shared-memory region)."""
    infer = client._infer

    def counting(c: Any, model: str, inputs: list[Any], outputs: list[Any], refused: int = 0) -> Any:
        sent = sum(_payload_bytes(i) for i in inputs)
        pending = infer(c, model, inputs, outputs, refused)

        async def answered() -> Any:
            result = await pending
            wire = _WIRE.get()
            if wire is not None:
                wire.append((sent, _response_bytes(result)))
            return result

        return answered()

    client._infer = counting


class _ServerClock:
    """The `covidet` ensemble's cumulative (requests, ns) from Triton's statistics API."""

    def __init__(self, url: str, protocol: str) -> None:
        if protocol == "grpc":
            import tritonclient.grpc as grpcclient

            self._client: Any = grpcclient.InferenceServerClient(url)
        else:
            import tritonclient.http as httpclient

            self._client = httpclient.InferenceServerClient(url)
        self._grpc = protocol == "grpc"

    def read(self) -> tuple[int, int]:
        if self._grpc:
            stats = self._client.get_inference_statistics(C.ENSEMBLE.name, as_json=True)
        else:
            stats = self._client.get_inference_statistics(C.ENSEMBLE.name)
        return _ensemble_success(stats)

    def close(self) -> None:
        self._client.close()


def _ensemble_success(stats: dict[str, Any]) -> tuple[int, int]:
    for m in stats.get("model_stats", []):
        if m.get("name") == C.ENSEMBLE.name:
            ok = m.get("inference_stats", {}).get("success", {})
            return int(ok.get("count", 0)), int(ok.get("ns", 0))
    return 0, 0


def server_mean_s(before: dict[str, Any], after: dict[str, Any]) -> float | None:
    """The ensemble's mean seconds per answered request between two statistics snapshots."""
    (n0, ns0), (n1, ns1) = _ensemble_success(before), _ensemble_success(after)
    return (ns1 - ns0) / (n1 - n0) / 1e9 if n1 > n0 else None


async def _served_s(clock: _ServerClock, before: tuple[int, int]) -> float | None:
    """This request's server seconds: the statistics' change since ``before`` once it counts one
    more request (Triton may count it a moment after the answer left)."""
    for _ in range(40):
        n, ns = await asyncio.to_thread(clock.read)
        if n == before[0] + 1:
            return (ns - before[1]) / 1e9
        if n > before[0] + 1:  # another request got in: no exact split for this one
            return None
        await asyncio.sleep(0.005)
    return None


def run_closed_loop_e2e(
    url: str,
    args: Any,
    paths: Sequence[Path],
    concurrency: int,
    duration_s: float,
    *,
    on_sample: Callable[[Sample], None] | None = None,
    warmup: int = 0,
) -> LevelResult:
    """``concurrency`` workers, each reading its next scan from disk and diagnosing it as soon as
    its previous one is answered, so that one worker reads while the others' scans are served:
    `covidet diagnose --concurrency`'s read-ahead (one `AsyncClient`, reads in worker threads).
    With shared memory each worker has its own client (a client's region serialises its scans).
    ``warmup`` scans first, not recorded."""
    from covidet.client import AsyncClient

    compression = None if args.compression == "none" else args.compression
    exact = concurrency == 1  # one request in flight: the statistics split each request
    samples: list[Sample] = []
    lock = threading.Lock()

    async def run() -> float:
        clients: list[Any] = []
        clock = _ServerClock(url, args.protocol) if exact else None

        def new_client() -> Any:
            client = AsyncClient(
                url,
                protocol=args.protocol,
                timeout_s=600,
                retries=0,
                shared_memory=args.shared_memory,
                compression=compression,
            )
            _count_bytes(client)
            clients.append(client)
            return client

        shared = None if args.shared_memory else new_client()

        async def one(client: Any, path: Path) -> Sample:
            wire: list[tuple[int, int]] = []
            _WIRE.set(wire)  # this worker task's own context: concurrent scans count apart
            t0 = time.perf_counter()
            slices = 0
            try:
                vol, read_s = await asyncio.to_thread(read_timed, path, args.evict_cache)
                slices = int(vol.hu.shape[0])
                before = await asyncio.to_thread(clock.read) if clock else None
                t1 = time.perf_counter()
                await client.diagnose(vol, return_masks=args.masks, explain=args.explain)
                request_s = time.perf_counter() - t1
                parts = {"read_s": read_s, "request_s": request_s, "total_s": read_s + request_s}
                if clock and before is not None:
                    served = await _served_s(clock, before)
                    if served is not None:
                        parts.update(served_s=served, transfer_s=request_s - served)
                if wire:
                    parts.update(request_bytes=float(wire[-1][0]), response_bytes=float(wire[-1][1]))
                return Sample(t0, parts["total_s"], True, slices, parts=parts)
            except Exception as exc:  # recorded, never dropped
                return Sample(t0, time.perf_counter() - t0, False, slices, type(exc).__name__)

        try:
            for i in range(warmup):
                await one(shared or new_client(), paths[i % len(paths)])
            stop_at = time.perf_counter() + duration_s

            async def worker(k: int) -> None:
                client = shared or new_client()
                i = k
                while time.perf_counter() < stop_at:
                    s = await one(client, paths[i % len(paths)])
                    i += concurrency
                    with lock:
                        samples.append(s)
                    if on_sample:
                        on_sample(s)

            t0 = time.perf_counter()
            await asyncio.gather(*(worker(k) for k in range(concurrency)))
            return time.perf_counter() - t0
        finally:
            for client in clients:
                await client.close()
            if clock:
                clock.close()

    wall = asyncio.run(run())
    return LevelResult("closed", concurrency, wall, samples)


def _pcts(values: Sequence[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)), "mean": float(v.mean())}


def summarise(res: LevelResult, server_mean: float | None, args: Any) -> dict[str, Any]:
    """The level's end-to-end block: p50/p95/mean of each part a scan's time has, how the served
    part was split off, and the bytes a scan costs on the wire."""
    ok = [s.parts for s in res.samples if s.ok and s.parts]
    out: dict[str, Any] = {
        "scans": len(ok),
        "read_from": (
            "disk, each scan's files dropped from the page cache before its read"
            if args.evict_cache
            else "disk through the OS page cache (warm after a series' first read)"
        ),
        "compression": args.compression,
        "shared_memory": bool(args.shared_memory),
    }
    for part in PARTS:
        values = [p[part] for p in ok if part in p]
        out[part] = _pcts(values) if values and len(values) == len(ok) else None
    if out["served_s"] is not None:
        out["split"] = "per request (one in flight: Triton's statistics before and after each request)"
    elif server_mean is not None and ok:
        request_mean = float(np.mean([p["request_s"] for p in ok]))
        out["served_s"] = {"mean": server_mean}
        out["transfer_s"] = {"mean": request_mean - server_mean}
        out["split"] = "level means only (requests overlap in Triton's statistics)"
    else:
        out["split"] = None
    for key in ("request_bytes", "response_bytes"):
        values = [p[key] for p in ok if key in p]
        out[f"{key}_per_scan"] = float(np.mean(values)) if values else None
    return out
