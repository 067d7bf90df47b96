"""Faults: a replica killed during load loses no scan (client retries and fails over)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import tritonclient.grpc as grpcclient

from covidet.client import Client, CovidetError
from covidet.phantom import make_phantom
from covidet.server import TritonServer

pytestmark = pytest.mark.e2e


def test_killed_replica_loses_no_scan(covidet_server: Any, repository: Path) -> None:
    second = TritonServer.on_free_ports(repository)
    second.start()
    try:
        second.wait_ready(timeout=300)
        scans = [make_phantom("COVID-19", n_slices=24, size=128, seed=90_000 + i) for i in range(12)]
        # the victim is listed first: clients start there and must fail over to the survivor
        urls = [second.grpc_url, covidet_server.grpc_url]
        started = threading.Event()

        def one(ph: Any) -> str:
            started.set()
            with Client(urls, timeout_s=300, retries=3, backoff_s=0.2) as client:
                try:
                    return f"ok {client.diagnose(ph.hu, spacing=ph.spacing).lung_volume_ml:.0f}"
                except CovidetError as exc:  # a definite error is acceptable only if retryable
                    return f"{'retryable' if exc.retryable else 'LOST'} {exc}"

        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(one, ph) for ph in scans]
            started.wait(30)
            stats = grpcclient.InferenceServerClient(second.grpc_url)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # kill it only once it is serving the load
                s = stats.get_inference_statistics(model_name="covidet", as_json=True)
                if int(s["model_stats"][0]["inference_stats"]["success"].get("count", 0)) >= 1:
                    break
                time.sleep(0.1)
            else:
                pytest.fail("the first replica never served a scan")
            second.kill()
            assert sum(f.done() for f in futures) < len(scans), "load was over before the kill"
            results = [f.result() for f in futures]
    finally:
        second.stop()
    assert len(results) == len(scans)
    assert all(r.startswith("ok") for r in results), results
    assert covidet_server.is_ready()
