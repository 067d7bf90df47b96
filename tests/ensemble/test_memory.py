"""Process resources: heap trimming, torch's thread count, the usable CPU cores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from covidet.ensemble import limit_torch_threads, memory_limit_bytes, release_free_memory


def test_release_free_memory_runs_after_large_frees() -> None:
    blocks = [np.ones(1 << 18) for _ in range(64)]  # 128 MB in blocks below the mmap threshold
    del blocks
    assert isinstance(release_free_memory(), bool)  # glibc here; a no-op elsewhere


def test_limit_torch_threads() -> None:
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    try:
        limit_torch_threads(1)
        assert torch.get_num_threads() == 1
        with pytest.raises(ValueError, match=">= 1"):
            limit_torch_threads(0)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("files", "limit"),
    [
        ({"cpu.max": "250000 100000\n"}, 2),  # cgroup v2, limits.cpu: 2500m -> 2 threads
        ({"cpu.max": "max 100000\n"}, None),  # v2, no limit
        ({"cpu/cpu.cfs_quota_us": "400000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 4),  # v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # v1, none
        ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),  # half: 1
        ({}, None),  # no cgroup files (not Linux, or not mounted)
    ],
)
def test_usable_cores_honour_a_container_cpu_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str], limit: int | None
) -> None:
    import os

    from covidet.ensemble import usable_cores

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))  # a 64-core node
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert usable_cores(tmp_path) == (64 if limit is None else limit)


def test_the_memory_limit_is_the_cgroups_when_lower(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16384000 kB\nMemFree: 1 kB\n")
    root = tmp_path / "cgroup"
    root.mkdir()
    assert memory_limit_bytes(root, meminfo) == 16384000 * 1024
    (root / "memory.max").write_text("max\n")
    assert memory_limit_bytes(root, meminfo) == 16384000 * 1024
    (root / "memory.max").write_text(f"{4 << 30}\n")
    assert memory_limit_bytes(root, meminfo) == 4 << 30
