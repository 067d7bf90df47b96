"""The stub watchdog and the process-tree reader, on stand-in stub processes (no Triton)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from covidet.serve import StubWatchdog, _heal
from covidet.serve._procs import process_tree, python_stubs, tree_memory_mib


class _FakeServer:
    """What the watchdog reads of a TritonServer: this test process stands in for tritonserver."""

    model_control_mode = "explicit"
    http_url = "127.0.0.1:1"

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.process = None


def _stub(tmp_path: Path, model: str, instance: str) -> subprocess.Popen[bytes]:
    """A process whose command line reads like a Python-backend stub's."""
    exe = tmp_path / "triton_python_backend_stub"
    if not exe.exists():
        exe.symlink_to(sys.executable)
    script = tmp_path / model / "1" / "model.py"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("import time\ntime.sleep(120)\n")
    return subprocess.Popen([str(exe), str(script), "shm-region", "67108864", instance, "DEFAULT"])


@pytest.fixture
def stubs(tmp_path: Path) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    procs = {
        "lung_seg_0_0": _stub(tmp_path, "lung_seg", "lung_seg_0_0"),
        "lung_seg_0_1": _stub(tmp_path, "lung_seg", "lung_seg_0_1"),
        "covidet_pipeline_0_0": _stub(tmp_path, "covidet_pipeline", "covidet_pipeline_0_0"),
    }
    deadline = time.monotonic() + 10
    while len(python_stubs(os.getpid())) < len(procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    yield procs
    for p in procs.values():
        p.kill()
        p.wait()


def test_stubs_are_found_with_model_and_instance(stubs: dict[str, subprocess.Popen[bytes]]) -> None:
    found = {(s.model, s.instance, s.pid) for s in python_stubs(os.getpid())}
    assert found == {(i.rsplit("_", 2)[0], i, p.pid) for i, p in stubs.items()}
    tree = {p.pid for p in process_tree(os.getpid())}
    assert os.getpid() in tree and {p.pid for p in stubs.values()} <= tree
    mem = tree_memory_mib(os.getpid())
    assert mem["rss_mib"] > 0 and 0 < mem["pss_mib"] <= mem["rss_mib"] + 1


def test_a_dead_stub_gets_its_model_reloaded_once(
    stubs: dict[str, subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, Any]] = []
    monkeypatch.setattr(_heal, "reload_model", lambda url, model, **kw: calls.append((model, kw)))
    logs: list[str] = []
    dog = StubWatchdog(_FakeServer(), headers={"k": "v"}, log=logs.append)  # type: ignore[arg-type]
    assert dog.snapshot() == {
        "lung_seg": {"lung_seg_0_0", "lung_seg_0_1"},
        "covidet_pipeline": {"covidet_pipeline_0_0"},
    }
    assert dog.check_once() == []  # all alive: nothing to do
    stubs["lung_seg_0_1"].kill()
    stubs["lung_seg_0_1"].wait()  # reaped; a zombie would count as dead too
    assert dog.check_once() == ["lung_seg"]
    assert calls == [("lung_seg", {"headers": {"k": "v"}, "generation": 1})]
    assert "lung_seg_0_1" in logs[0] and [m for m, _ in dog.reloads] == ["lung_seg"]


def test_the_watchdog_needs_explicit_model_control() -> None:
    server = _FakeServer()
    server.model_control_mode = "none"
    with pytest.raises(ValueError, match="explicit"):
        StubWatchdog(server)  # type: ignore[arg-type]
