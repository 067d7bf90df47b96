"""The stub watchdog and the process-tree reader, on stand-in stub processes (no Triton)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from covidet.server import StubWatchdog, _heal
from covidet.server._procs import process_tree, python_stubs, tree_memory_mib


class _FakeServer:
    """What the watchdog reads of a TritonServer: ``pid`` is a stand-in tritonserver process."""

    model_control_mode = "explicit"
    http_url = "127.0.0.1:1"

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.process = None


#: The stand-in tritonserver: starts the stub command lines it is given, never reaps them.
_PARENT = (
    "import json, subprocess, sys, time\n"
    "children = [subprocess.Popen(c) for c in json.loads(sys.argv[1])]\n"
    "time.sleep(120)\n"
)
_INSTANCES = {
    "lung_seg_0_0": "lung_seg",
    "lung_seg_0_1": "lung_seg",
    "covidet_pipeline_0_0": "covidet_pipeline",
}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[_FakeServer]:
    """A parent process with three children whose command lines read like Python-backend stubs'
    (its own tree: the suite's real Triton servers are not part of it)."""
    exe = tmp_path / "triton_python_backend_stub"
    exe.symlink_to(sys.executable)
    commands = []
    for instance, model in _INSTANCES.items():
        script = tmp_path / model / "1" / "model.py"
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text("import time\ntime.sleep(120)\n")
        commands.append([str(exe), str(script), "shm-region", "67108864", instance, "DEFAULT"])
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, json.dumps(commands)], start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while len(python_stubs(parent.pid)) < len(commands):
            assert time.monotonic() < deadline, "the stand-in stubs did not start"
            time.sleep(0.05)
        yield _FakeServer(parent.pid)
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()


def test_stubs_are_found_with_model_and_instance(server: _FakeServer) -> None:
    found = {(s.model, s.instance) for s in python_stubs(server.pid)}
    assert found == {(model, instance) for instance, model in _INSTANCES.items()}
    tree = {p.pid for p in process_tree(server.pid)}
    assert server.pid in tree and {s.pid for s in python_stubs(server.pid)} <= tree
    assert os.getpid() not in tree
    mem = tree_memory_mib(server.pid)
    assert mem["rss_mib"] > 0 and 0 < mem["pss_mib"] <= mem["rss_mib"] + 1


def test_a_dead_stub_gets_its_model_reloaded_once(
    server: _FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, Any]] = []
    monkeypatch.setattr(_heal, "reload_model", lambda url, model, **kw: calls.append((model, kw)))
    logs: list[str] = []
    dog = StubWatchdog(server, headers={"k": "v"}, log=logs.append)  # type: ignore[arg-type]
    assert dog.snapshot() == {
        "lung_seg": {"lung_seg_0_0", "lung_seg_0_1"},
        "covidet_pipeline": {"covidet_pipeline_0_0"},
    }
    assert dog.check_once() == []  # all alive: nothing to do
    victim = next(s for s in python_stubs(server.pid) if s.instance == "lung_seg_0_1")
    os.kill(victim.pid, signal.SIGKILL)  # its parent never reaps it: a zombie counts as dead
    deadline = time.monotonic() + 10
    while any(s.pid == victim.pid for s in python_stubs(server.pid)):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert dog.check_once() == ["lung_seg"]
    assert calls == [("lung_seg", {"headers": {"k": "v"}, "generation": 1})]
    assert "lung_seg_0_1" in logs[0] and [m for m, _ in dog.reloads] == ["lung_seg"]


def test_the_watchdog_needs_explicit_model_control() -> None:
    server = _FakeServer(os.getpid())
    server.model_control_mode = "none"
    with pytest.raises(ValueError, match="explicit"):
        StubWatchdog(server)  # type: ignore[arg-type]
