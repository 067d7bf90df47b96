"""Process resources of the pipeline step: heap trimming and torch's thread count."""

from __future__ import annotations

import numpy as np
import pytest

from covidet.serving import limit_torch_threads, release_free_memory


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
