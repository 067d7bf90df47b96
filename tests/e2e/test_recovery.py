"""Recovery during load: a model reload, a crashed Python-backend stub, a server restart.

One server with explicit model control and locked admin APIs (as `covidet serve` runs it). In each
test a stream of scans is in flight while the fault happens, and every scan must end with a result.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from covidet import _contract as C
from covidet.client import Client, CovidetError
from covidet.phantom import make_phantom
from covidet.server import StubWatchdog, TritonServer, admin_headers, restricted_api_args
from covidet.server._heal import reload_model
from covidet.server._procs import python_stubs

pytestmark = pytest.mark.e2e

_HEADER, _TOKEN = "covidet-admin-key", "recovery-test-token-0123456789abcdef"
_ADMIN = admin_headers(_HEADER, _TOKEN, "http")


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[TritonServer]:
    srv = TritonServer.on_free_ports(
        repository,
        model_control_mode="explicit",
        extra_args=restricted_api_args(_HEADER, _TOKEN),
    )
    srv.start()
    try:
        srv.wait_ready(timeout=300)
        yield srv
    finally:
        srv.stop()
        assert srv.shm_regions() == [], "a stopped server left shared-memory regions in /dev/shm"


class _Load:
    """Clients sending scans back to back until stopped; each scan's (start, end, outcome)."""

    def __init__(self, url: str, *, workers: int = 3, **client_kw: Any) -> None:
        self.url, self.client_kw = url, client_kw
        self.stop = threading.Event()
        self.done: list[tuple[float, float, str]] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(workers)
        self._futures = [self._pool.submit(self._worker, w) for w in range(workers)]

    def _worker(self, w: int) -> None:
        with Client(self.url, timeout_s=300, **self.client_kw) as client:
            k = 0
            while not self.stop.is_set():
                ph = make_phantom("COVID-19", n_slices=24, size=128, seed=95_000 + 100 * w + k % 4)
                t0 = time.monotonic()
                try:
                    vol = client.diagnose(ph.hu, spacing=ph.spacing).lung_volume_ml
                    outcome = "ok" if vol > 0 else f"BAD lung volume {vol}"
                except CovidetError as exc:
                    outcome = f"LOST {type(exc).__name__}: {exc}"
                with self._lock:
                    self.done.append((t0, time.monotonic(), outcome))
                k += 1

    def wait_for(self, n: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while len(self.done) < n:
            assert time.monotonic() < deadline, f"only {len(self.done)} of {n} scans came back"
            time.sleep(0.1)

    def finish(self) -> list[tuple[float, float, str]]:
        self.stop.set()
        for f in self._futures:
            f.result(timeout=600)
        self._pool.shutdown()
        return self.done


def _during_load(server: TritonServer, fault: Callable[[], None], **client_kw: Any) -> list[str]:
    """Run ``fault`` once scans flow; keep the load on until 3 more scans started after it ended."""
    load = _Load(server.grpc_url, **client_kw)
    try:
        load.wait_for(1)
        t0 = time.monotonic()
        fault()
        t1 = time.monotonic()
        deadline = time.monotonic() + 300
        while sum(start > t1 for start, _, _ in load.done) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        done = load.finish()
    overlapping = [o for start, end, o in done if start < t1 and end > t0]
    assert overlapping, "no scan was in flight during the fault"
    assert sum(start > t1 for start, _, _ in done) >= 3, "the server did not serve after the fault"
    return [o for _, _, o in done]


def test_model_reload_under_load_loses_nothing(server: TritonServer) -> None:
    """Reloading the pipeline and a slice model (new instances, then the old ones retire) drops no scan,
    even for clients that never retry."""

    def reload_both() -> None:
        for gen, model in enumerate((C.LUNG_SEG.name, C.PIPELINE.name), start=100):
            reload_model(server.http_url, model, headers=_ADMIN, generation=gen)

    results = _during_load(server, reload_both, retries=0)
    assert results == ["ok"] * len(results), results
    assert server.is_ready()


def test_a_crashed_stub_is_reloaded_and_no_scan_is_lost(server: TritonServer) -> None:
    """Triton 2.51 does not restart a dead Python-backend stub; the watchdog reloads its model, and
    the scans that hit the dead instance meanwhile are answered UNAVAILABLE and retried."""
    messages: list[str] = []
    with StubWatchdog(server, headers=_ADMIN, interval_s=0.5, log=messages.append) as dog:
        before = {s.instance: s.pid for s in python_stubs(server.pid or 0)}
        assert {C.LUNG_SEG.name, C.PIPELINE.name} <= set(dog.expected), dog.expected

        def crash() -> None:
            for model in (C.LUNG_SEG.name, C.PIPELINE.name):
                victim = next(s for s in python_stubs(server.pid or 0) if s.model == model)
                os.kill(victim.pid, signal.SIGKILL)
                deadline = time.monotonic() + 60
                while not any(m == model for m, _ in dog.reloads) and time.monotonic() < deadline:
                    time.sleep(0.2)

        results = _during_load(server, crash, retries=12, backoff_s=0.5, max_backoff_s=4.0)
    assert results == ["ok"] * len(results), results
    assert {C.LUNG_SEG.name, C.PIPELINE.name} <= {m for m, _ in dog.reloads}, messages
    after = {s.instance: s.pid for s in python_stubs(server.pid or 0)}
    assert set(after) == set(before)  # every instance is back, now as a fresh process
    assert any(after[i] != before[i] for i in after if i.startswith(C.LUNG_SEG.name))
    with Client(server.grpc_url, retries=0) as client:  # and it serves without any retry
        ph = make_phantom("CAP", n_slices=24, size=128, seed=95_500)
        assert client.diagnose(ph.hu, spacing=ph.spacing).lung_volume_ml > 0


def test_server_restart_under_load_loses_no_scan(server: TritonServer) -> None:
    """SIGTERM drains what is in flight; scans sent meanwhile are retried until the server is back
    on the same ports."""

    def restart() -> None:
        server.stop()
        assert server.shm_regions() == []
        server.start()
        server.wait_ready(timeout=300)

    results = _during_load(server, restart, retries=12, backoff_s=0.5, max_backoff_s=8.0)
    assert results == ["ok"] * len(results), results
