"""Accounting of a server's process tree: memory (the clients' CT regions apart), CPU time, and
finding a local server's process from its address."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import numpy as np

from covidet import _contract as C
from covidet.server._procs import listening_pid, tree_cpu_seconds, tree_memory_mib


def test_client_ct_regions_are_counted_apart_from_own_memory() -> None:
    import tritonclient.utils.shared_memory as shm

    before = tree_memory_mib(os.getpid())
    name = f"{C.CLIENT_SHM_PREFIX}test_{uuid.uuid4().hex[:8]}"
    handle = shm.create_shared_memory_region(name, "/" + name, 16 << 20)
    try:
        shm.set_shared_memory_region(handle, [np.ones(4 << 20, np.float32)])  # 16 MiB touched
        mem = tree_memory_mib(os.getpid())
        assert mem["client_shm_pss_mib"] - before["client_shm_pss_mib"] >= 15
        assert mem["own_pss_mib"] == mem["pss_mib"] - mem["client_shm_pss_mib"]
        assert 0 < mem["own_pss_mib"] < mem["pss_mib"] <= mem["rss_mib"] + 1
    finally:
        shm.destroy_shared_memory_region(handle)


def test_cpu_seconds_of_a_process_tree_grow_with_its_work() -> None:
    before = tree_cpu_seconds(os.getpid())
    # this process, by its program's name; under it (in a full run) the test server and its stubs
    key = Path(sys.executable).name
    assert key in before
    x = 0
    for i in range(2_000_000):
        x += i
    assert tree_cpu_seconds(os.getpid())[key] > before[key]
    assert tree_cpu_seconds(2**22 + 12345) == {}  # no such process


def test_the_process_listening_at_a_local_address_is_found() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert listening_pid(f"127.0.0.1:{port}") == os.getpid()
        assert listening_pid(f"http://localhost:{port}/v2") == os.getpid()
        assert listening_pid(f"example.org:{port}") is None  # not this machine
    assert listening_pid(f"127.0.0.1:{port}") is None  # closed: nobody listens there
    assert listening_pid("127.0.0.1") is None
