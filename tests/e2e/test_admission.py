"""Admission bounded by memory, end to end: a burst beyond the server's budget is refused at once
with UNAVAILABLE instead of queued, the client's retries get every scan answered, and the server
keeps serving."""

from __future__ import annotations

import json
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from covidet import _contract as C
from covidet.client import Client
from covidet.export._admission import queue_size
from covidet.phantom import make_phantom

pytestmark = pytest.mark.e2e

BURST = 8


@pytest.fixture(scope="module")
def tight_server(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The cpu repository with an in-flight budget of three of the burst's scans: two pipeline
    instances processing, one scan waiting (what the render writes for that budget)."""
    from covidet.server import TritonServer

    ph = make_phantom("COVID-19", n_slices=48, size=192, seed=11)
    scan_bytes = ph.hu.nbytes
    repo = tmp_path_factory.mktemp("tight") / "repo"
    shutil.copytree(repository, repo)
    pipeline = repo / C.PIPELINE.name
    config = (pipeline / "config.pbtxt").read_text()
    instances = int(re.search(r"^\s*count:\s*(\d+)", config, re.MULTILINE).group(1))  # type: ignore[union-attr]
    waiting = queue_size(3 * scan_bytes, scan_bytes, instances)
    assert waiting == 1
    config = re.sub(r"max_queue_size: \d+", f"max_queue_size: {waiting}", config)
    (pipeline / "config.pbtxt").write_text(config)
    setup = json.loads((pipeline / "1" / "pipeline.json").read_text())
    setup["max_scan_bytes"] = scan_bytes
    (pipeline / "1" / "pipeline.json").write_text(json.dumps(setup))
    server = TritonServer.on_free_ports(repo)
    server.start()
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


def test_the_clients_retries_get_every_scan_of_a_burst_answered(tight_server: Any) -> None:
    server, ph = tight_server

    def one(_: int) -> float:
        # shared memory: the burst's volumes are not copied into gRPC messages by this test
        with Client(server.grpc_url, timeout_s=600, retries=12, shared_memory=True) as client:
            return client.diagnose(ph.hu, spacing=ph.spacing).lung_volume_ml

    with ThreadPoolExecutor(BURST) as pool:
        volumes = list(pool.map(one, range(BURST)))
    assert len(volumes) == BURST and len(set(volumes)) == 1 and volumes[0] > 0  # none lost, same answer


def test_a_scan_over_the_servers_limit_is_an_invalid_argument(tight_server: Any) -> None:
    server, ph = tight_server
    bigger = np.concatenate([ph.hu, ph.hu[:1]])
    answer = _raw(server.grpc_url, bigger, np.asarray(ph.spacing, np.float32))
    assert "INVALID_ARGUMENT" in answer and "larger than this server admits" in answer
