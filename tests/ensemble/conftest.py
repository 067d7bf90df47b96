"""The torch devices the GPU profiles' pre/post-processing is tested on: the CPU, and CUDA too
where a GPU is visible."""

from __future__ import annotations

import pytest


def _devices() -> list[str]:
    import torch

    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


@pytest.fixture(params=_devices())
def device(request: pytest.FixtureRequest) -> str:
    return str(request.param)
