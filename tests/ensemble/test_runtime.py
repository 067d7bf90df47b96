"""The torch runtime: eager and compiled (inductor, per padded batch size) give the same answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from covidet import _contract as C
from covidet.ensemble import COMPILE_BUCKETS, TorchRunner, make_runner
from covidet.export._render import default_checkpoints


def test_compiled_torch_runner_pads_batches_to_buckets() -> None:
    import torch

    stem = default_checkpoints() / C.LUNG_SEG.name
    eager = TorchRunner(stem, device="cpu")
    compiled = TorchRunner(stem, device="cpu", compile_mode="default")
    rng = np.random.default_rng(0)
    torch._dynamo.reset()
    for n in (3, 4):  # 3 is padded to the bucket of 4: one compiled graph serves both
        x = rng.random((n, 1, 128, 128), dtype=np.float32)
        got = compiled(x)
        assert got.shape == (n, 1, 128, 128)
        np.testing.assert_allclose(got, eager(x), atol=1e-5)
    assert 3 not in COMPILE_BUCKETS and 4 in COMPILE_BUCKETS
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    out = compiled.forward(torch.from_numpy(x))  # the DLPack-side API: tensors in, CPU float32 out
    assert out.dtype == torch.float32 and out.device.type == "cpu" and out.is_contiguous()


def test_runtime_parameters_choose_the_runner() -> None:
    stem = str(default_checkpoints() / C.LUNG_SEG.name)
    params = {"runtime": "torch", "checkpoint": stem, "device": "cpu", "compile": "none"}
    runner = make_runner(params, Path("."))
    assert isinstance(runner, TorchRunner) and not runner.compiled
