"""Memory accounting of a server's process tree: the clients' CT regions counted apart."""

from __future__ import annotations

import os
import uuid

import numpy as np

from covidet import _contract as C
from covidet.serve._procs import tree_memory_mib


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
