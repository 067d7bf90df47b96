"""Admission bounded by memory, end to end: a burst beyond the server's budget is refused at once
with UNAVAILABLE instead of queued, the client's retries get every scan answered, and the server
keeps serving."""

from __future__ import annotations

import json
import re
import shutil
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from covidet import _contract as C
from covidet.client import Client
from covidet.export._admission import budget_for, queue_size
from covidet.phantom import make_phantom
from covidet.server._procs import PeakMemory

pytestmark = pytest.mark.e2e

BURST = 8


def _instances(config: str) -> int:
    return int(re.search(r"^\s*count:\s*(\d+)", config, re.MULTILINE).group(1))  # type: ignore[union-attr]


def _server(repository: Path, folder: Path, scan_bytes: int, waiting: int) -> Any:
    """The cpu repository with the queue bound the render writes for a budget that lets
    ``waiting`` scans of ``scan_bytes`` wait (`budget_for`), and that largest scan: returns the
    started server and the budget."""
    from covidet.server import TritonServer

    repo = folder / "repo"
    shutil.copytree(repository, repo)
    pipeline = repo / C.PIPELINE.name
    config = (pipeline / "config.pbtxt").read_text()
    instances = _instances(config)
    budget = budget_for(waiting, scan_bytes, instances)
    assert queue_size(budget, scan_bytes, instances) == waiting
    config = re.sub(r"max_queue_size: \d+", f"max_queue_size: {waiting}", config)
    (pipeline / "config.pbtxt").write_text(config)
    setup = json.loads((pipeline / "1" / "pipeline.json").read_text())
    setup["max_scan_bytes"] = scan_bytes
    (pipeline / "1" / "pipeline.json").write_text(json.dumps(setup))
    server = TritonServer.on_free_ports(repo)
    server.start()
    return server, budget


@pytest.fixture(scope="module")
def tight_server(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A budget for two pipeline instances processing the burst's scans and one waiting."""
    ph = make_phantom("COVID-19", n_slices=48, size=192, seed=11)
    server, _ = _server(repository, tmp_path_factory.mktemp("tight"), ph.hu.nbytes, waiting=1)
    try:
        server.wait_ready(timeout=600)
        yield server, ph
    finally:
        server.stop()


def _raw(url: str, hu: np.ndarray, spacing: np.ndarray) -> str:
    client = grpcclient.InferenceServerClient(url)
    inputs = []
    for name, arr in (("CT", hu), ("SPACING", spacing)):
        inp = grpcclient.InferInput(name, list(arr.shape), "INT16" if arr.dtype == np.int16 else "FP32")
        inp.set_data_from_numpy(arr)
        inputs.append(inp)
    try:
        client.infer(C.ENSEMBLE.name, inputs, client_timeout=600)
    except InferenceServerException as exc:
        return f"{exc.status()} {exc.message()}"
    return "ok"


def test_a_burst_beyond_the_budget_is_refused_at_once_not_queued(tight_server: Any) -> None:
    server, ph = tight_server
    spacing = np.asarray(ph.spacing, np.float32)
    with ThreadPoolExecutor(BURST) as pool:
        answers = list(pool.map(lambda _: _raw(server.grpc_url, ph.hu, spacing), range(BURST)))
    refused = [a for a in answers if a != "ok"]
    assert refused, answers  # more scans than the budget holds at once
    assert all("UNAVAILABLE" in a and "Exceeds maximum queue size" in a for a in refused), refused
    assert answers.count("ok") >= 3  # the budget's three were served
    assert server.is_ready()


def _metric(server: Any, name: str) -> float:
    text = urllib.request.urlopen(server.metrics_url, timeout=5).read().decode()
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " ")]
    return values[0] if values else 0.0


def test_the_clients_retries_get_every_scan_of_a_burst_answered(tight_server: Any) -> None:
    server, ph = tight_server
    rejected_before = _metric(server, "covidet_admission_rejected_total")
    reported: list[int] = []  # the refusals each scan reported on the attempt that was admitted

    def one(_: int) -> float:
        # shared memory: the burst's volumes are not copied into gRPC messages by this test
        with Client(server.grpc_url, timeout_s=600, retries=12, shared_memory=True) as client:
            attempts: list[int] = []
            infer = client._infer

            def recording(c: Any, model: str, inputs: Any, outputs: Any, refused: int = 0) -> Any:
                attempts.append(refused)
                return infer(c, model, inputs, outputs, refused)

            client._infer = recording  # type: ignore[method-assign,assignment]
            volume = client.diagnose(ph.hu, spacing=ph.spacing).lung_volume_ml
            reported.append(attempts[-1])
            return volume

    with ThreadPoolExecutor(BURST) as pool:
        volumes = list(pool.map(one, range(BURST)))
    assert len(volumes) == BURST and len(set(volumes)) == 1 and volumes[0] > 0  # none lost, same answer
    # the server counted exactly the refusals its clients met, once each scan got in
    assert sum(reported) > 0
    assert _metric(server, "covidet_admission_rejected_total") - rejected_before == sum(reported)
    assert _metric(server, 'covidet_admission_capacity{state="waiting"}') == 1
    config = (server.model_repository / C.PIPELINE.name / "config.pbtxt").read_text()
    assert _metric(server, 'covidet_admission_capacity{state="processing"}') == _instances(config)


def test_a_scan_over_the_servers_limit_is_an_invalid_argument(tight_server: Any) -> None:
    server, ph = tight_server
    bigger = np.concatenate([ph.hu, ph.hu[:1]])
    answer = _raw(server.grpc_url, bigger, np.asarray(ph.spacing, np.float32))
    assert "INVALID_ARGUMENT" in answer and "larger than this server admits" in answer


def test_a_burst_of_large_scans_keeps_the_servers_memory_within_its_budget(
    repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Scans large enough that their bytes, not the stubs' fixed overheads, decide the server's
    memory: the own memory of tritonserver and every stub (PSS less the clients' CT regions)
    rises, over its level after a warm-up scan, by no more than the budget while a burst of more
    scans than it admits is retried until every one is answered."""
    base = make_phantom("COVID-19", n_slices=40, size=512, seed=5)
    hu = np.ascontiguousarray(np.resize(base.hu, (200, 512, 512)))
    server, budget = _server(repository, tmp_path_factory.mktemp("large"), hu.nbytes, waiting=1)
    try:
        server.wait_ready(timeout=600)

        def one(_: int) -> float:
            with Client(server.grpc_url, timeout_s=600, retries=30, shared_memory=True) as client:
                return client.diagnose(hu, spacing=base.spacing).lung_volume_ml

        one(0)  # warm-up: the slice models' batches and the backend's pools reach their size
        with PeakMemory(server.pid or 0) as peak, ThreadPoolExecutor(5) as pool:
            volumes = list(pool.map(one, range(5)))
        assert len(volumes) == 5 and len(set(volumes)) == 1 and volumes[0] > 0  # none lost
        growth = peak.growth_mib * (1 << 20)
        assert 0 < growth <= budget, (
            f"server memory rose {growth / (1 << 30):.2f} GiB over a budget of {budget / (1 << 30):.2f} "
            f"GiB: {peak.peak_by_process}"
        )
        assert server.is_ready()
    finally:
        server.stop()
