"""Shared fixtures: one real Triton server per test session, phantoms with ground truth."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from covidet import _contract as C

#: The tests' admission budget: room for every request the tests send at once, whatever the
#: machine's memory (the default is a quarter of it). tests/e2e/test_admission.py tests the bound.
TEST_INFLIGHT_SCANS = 64


@pytest.fixture(scope="session")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cpu-profile model repository rendered from the shipped demo checkpoints."""
    from covidet.export._admission import DEFAULT_MAX_SCAN_BYTES
    from covidet.export._render import render_repository

    out = tmp_path_factory.mktemp("repo") / "model_repository"
    return render_repository("cpu", out, max_inflight_bytes=TEST_INFLIGHT_SCANS * DEFAULT_MAX_SCAN_BYTES)


@pytest.fixture(scope="session")
def int8_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cpu-int8 repository (lung and lesion models int8, calibrated on phantoms)."""
    from covidet.export._admission import DEFAULT_MAX_SCAN_BYTES
    from covidet.export._render import render_repository

    out = tmp_path_factory.mktemp("int8") / "model_repository"
    return render_repository("cpu-int8", out, max_inflight_bytes=TEST_INFLIGHT_SCANS * DEFAULT_MAX_SCAN_BYTES)


@pytest.fixture(scope="session")
def covidet_server(repository: Path) -> Iterator[object]:
    """A real Triton server on free 127.0.0.1 ports, serving the rendered repository."""
    from covidet.server import TritonServer

    server = TritonServer.on_free_ports(repository)
    server.start()
    try:
        server.wait_ready(timeout=_ready_timeout())
        yield server
    finally:
        server.stop()


def _ready_timeout() -> float:
    return float(os.environ.get("COVIDET_TEST_READY_TIMEOUT", "300"))


@pytest.fixture(scope="session")
def diagnose_in_process() -> Callable[..., dict[str, np.ndarray]]:
    """``run(repo, phantom, return_masks=False)``: the repository's models in-process through the
    serving pipeline, no server: the reference answer (output tensors by contract name)."""
    from covidet.ensemble import InProcessModels, PipelineConfig, ScanPipeline

    def run(repo: Path, ph: Any, *, return_masks: bool = False) -> dict[str, np.ndarray]:
        models = InProcessModels(repo)
        try:
            pipe = ScanPipeline(PipelineConfig.from_repository(repo), models.infer)
            spacing = np.asarray(ph.spacing, np.float32)
            return asyncio.run(pipe.run(ph.hu, spacing, return_masks=return_masks))
        finally:
            models.close()

    return run


@pytest.fixture(scope="session")
def diagnose_served() -> Callable[..., Any]:
    """``run(repo, phantom, server_log=None, **diagnose_options)``: a Triton server of its own on
    ``repo`` (free 127.0.0.1 ports, its log in ``server_log``), one diagnosis over gRPC, the server
    stopped; returns the `Diagnosis`."""
    from covidet.client import Client
    from covidet.server import TritonServer

    def run(repo: Path, ph: Any, *, server_log: Path | None = None, **options: Any) -> Any:
        server = TritonServer.on_free_ports(repo, log_file=server_log)
        server.start()
        try:
            server.wait_ready(timeout=_ready_timeout())
            with Client(server.grpc_url, timeout_s=600) as client:
                return client.diagnose(ph.hu, spacing=ph.spacing, **options)
        finally:
            server.stop()

    return run


@pytest.fixture(scope="session")
def phantoms() -> dict[str, object]:
    """One fresh phantom per class (seeds never used in training)."""
    from covidet.phantom import make_phantom

    return {
        kind: make_phantom(kind, n_slices=80, size=256, seed=50_000 + i)
        for i, kind in enumerate(C.CLASS_NAMES)
    }
