"""Shared fixtures: one real Triton server per test session, phantoms with ground truth."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from covidet import _contract as C


@pytest.fixture(scope="session")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cpu-profile model repository rendered from the shipped demo checkpoints."""
    from covidet.serve._render import render_repository

    return render_repository("cpu", tmp_path_factory.mktemp("repo") / "model_repository")


@pytest.fixture(scope="session")
def int8_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cpu-int8 repository (lung and lesion models int8, calibrated on phantoms)."""
    from covidet.serve._render import render_repository

    return render_repository("cpu-int8", tmp_path_factory.mktemp("int8") / "model_repository")


@pytest.fixture(scope="session")
def covidet_server(repository: Path) -> Iterator[object]:
    """A real Triton server on free 127.0.0.1 ports, serving the rendered repository."""
    from covidet.serve import TritonServer

    server = TritonServer.on_free_ports(repository)
    server.start()
    try:
        server.wait_ready(timeout=float(os.environ.get("COVIDET_TEST_READY_TIMEOUT", "300")))
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def phantoms() -> dict[str, object]:
    """One fresh phantom per class (seeds never used in training)."""
    from covidet.phantom import make_phantom

    return {
        kind: make_phantom(kind, n_slices=80, size=256, seed=50_000 + i)
        for i, kind in enumerate(C.CLASS_NAMES)
    }
