"""`BlsInfer` with a stand-in for Triton's `pb_utils`: host arrays, device tensors, the fallback."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from covidet import _contract as C
from covidet.ensemble import FALLBACK_WARNING, BlsInfer
from covidet.ensemble._bls import RETRY_FIRST_S, RETRY_MAX_S

torch = pytest.importorskip("torch")


class _Tensor:
    def __init__(self, name: str, value: Any) -> None:
        self.name, self.value = name, value

    @classmethod
    def from_dlpack(cls, name: str, capsule: Any) -> _Tensor:
        return cls(name, torch.utils.dlpack.from_dlpack(capsule))

    def as_numpy(self) -> np.ndarray:
        assert isinstance(self.value, np.ndarray), "as_numpy of a tensor that is not on the host"
        return self.value

    def to_dlpack(self) -> Any:
        return torch.utils.dlpack.to_dlpack(self.value)


class _Triton:
    """pb_utils as far as BlsInfer uses it: the slice model doubles its input."""

    def __init__(self, fail_device: bool = False, fail_all: bool = False, empty_device: bool = False) -> None:
        self.fail_device, self.fail_all, self.empty_device = fail_device, fail_all, empty_device
        self.sent: list[tuple[str, type]] = []
        self.warnings: list[str] = []
        self.infos: list[str] = []
        self.Tensor = _Tensor
        self.Logger = SimpleNamespace(log_warn=self.warnings.append, log_info=self.infos.append)
        self.TRITONSERVER_MEMORY_GPU = "GPU"

    def PreferredMemory(self, kind: str, index: int) -> tuple[str, int]:
        return (kind, index)

    def InferenceRequest(self, model_name: str, inputs: list, requested_output_names: list, **kw: Any) -> Any:
        (tensor,) = inputs
        self.sent.append((model_name, type(tensor.value)))
        on_device = not isinstance(tensor.value, np.ndarray)
        error = self.fail_all or (self.fail_device and on_device)

        async def async_exec() -> Any:
            if on_device and self.fail_device:
                raise RuntimeError("Failed to open the cudaIpcHandle")
            value = tensor.value[:0] if (on_device and self.empty_device) else tensor.value * 2
            out = _Tensor(requested_output_names[0], value)
            return SimpleNamespace(
                has_error=lambda: error,
                error=lambda: SimpleNamespace(message=lambda: "lung_seg failed: boom"),
                output=out,
            )

        return SimpleNamespace(async_exec=async_exec)

    @staticmethod
    def get_output_tensor_by_name(response: Any, name: str) -> Any:
        return response.output


MODEL = C.LUNG_SEG.name


def test_host_arrays_go_and_come_as_numpy() -> None:
    pb = _Triton()
    y = asyncio.run(BlsInfer(pb)(MODEL, np.ones((2, 1, 4, 4), np.float32)))
    assert isinstance(y, np.ndarray) and y.sum() == 64 and pb.sent == [(MODEL, np.ndarray)]


def test_device_tensors_go_and_come_by_dlpack() -> None:
    pb = _Triton()
    bls = BlsInfer(pb, device="cpu", device_tensors=True)
    y = asyncio.run(bls(MODEL, torch.ones((2, 1, 4, 4))))
    assert isinstance(y, torch.Tensor) and float(y.sum()) == 64
    assert pb.sent == [(MODEL, torch.Tensor)] and bls.device_tensors and not pb.warnings
    # without the setting (CPU profiles) a tensor is sent from the host
    assert isinstance(asyncio.run(BlsInfer(pb, device="cpu")(MODEL, torch.ones(1, 1, 2, 2))), np.ndarray)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_failing_device_path_falls_back_to_the_host_and_is_tried_again_later() -> None:
    pb, clock, fallbacks = _Triton(fail_device=True), _Clock(), []
    bls = BlsInfer(
        pb, device="cpu", device_tensors=True, clock=clock, on_fallback=lambda: fallbacks.append(1)
    )
    x = torch.ones((1, 1, 2, 2))
    y = asyncio.run(bls(MODEL, x))
    assert isinstance(y, np.ndarray) and y.sum() == 8
    assert not bls.device_tensors and len(pb.warnings) == 1 and "cudaIpcHandle" in pb.warnings[0]
    assert FALLBACK_WARNING in pb.warnings[0] and f"next {RETRY_FIRST_S:.0f} s" in pb.warnings[0]
    assert fallbacks == [1]
    clock.now += RETRY_FIRST_S - 1  # within the wait: the host only, no new warning
    asyncio.run(bls(MODEL, x))
    assert pb.sent[-1] == (MODEL, np.ndarray) and len(pb.sent) == 3 and len(pb.warnings) == 1
    clock.now += 2  # the wait is over: one try on the device, failing again, then twice as long
    asyncio.run(bls(MODEL, x))
    assert pb.sent[-2:] == [(MODEL, torch.Tensor), (MODEL, np.ndarray)] and len(pb.warnings) == 2
    assert f"next {2 * RETRY_FIRST_S:.0f} s" in pb.warnings[1] and fallbacks == [1, 1]
    clock.now += 2 * RETRY_FIRST_S + 1
    pb.fail_device = False  # the cause went away (a pool that was full for a moment)
    y = asyncio.run(bls(MODEL, x))
    assert isinstance(y, torch.Tensor) and bls.device_tensors and pb.infos and len(pb.warnings) == 2
    asyncio.run(bls(MODEL, x))
    assert pb.sent[-1] == (MODEL, torch.Tensor)


def test_the_wait_between_tries_is_bounded() -> None:
    pb, clock = _Triton(fail_device=True), _Clock()
    bls = BlsInfer(pb, device="cpu", device_tensors=True, clock=clock)
    for _ in range(12):
        asyncio.run(bls(MODEL, torch.ones((1, 1, 2, 2))))
        clock.now += RETRY_MAX_S + 1
    assert f"next {RETRY_MAX_S:.0f} s" in pb.warnings[-1] and len(pb.warnings) == 12


def test_chunks_in_flight_when_the_device_path_fails_warn_once() -> None:
    pb, clock, fallbacks = _Triton(fail_device=True), _Clock(), []
    bls = BlsInfer(
        pb, device="cpu", device_tensors=True, clock=clock, on_fallback=lambda: fallbacks.append(1)
    )

    async def four() -> list[Any]:
        return list(await asyncio.gather(*(bls(MODEL, torch.ones((1, 1, 2, 2))) for _ in range(4))))

    ys = asyncio.run(four())
    assert all(isinstance(y, np.ndarray) and y.sum() == 8 for y in ys)
    assert len(pb.warnings) == 1 and fallbacks == [1]


def test_a_model_error_is_the_answer_and_keeps_the_device_path_off_only_if_the_host_works() -> None:
    pb = _Triton(fail_all=True)
    bls = BlsInfer(pb, device="cpu", device_tensors=True)
    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(bls(MODEL, torch.ones((1, 1, 2, 2))))
    assert bls.device_tensors and not pb.warnings  # the host failed too: nothing to blame on the GPU


def test_an_empty_answer_is_never_taken_for_a_result() -> None:
    """The Python backend answers a GPU tensor it could not move (a full CUDA memory pool) with an
    empty tensor and no error: that is a failure of the device path, retried through the host."""
    pb = _Triton(empty_device=True)
    bls = BlsInfer(pb, device="cpu", device_tensors=True)
    y = asyncio.run(bls(MODEL, torch.ones((3, 1, 2, 2))))
    assert isinstance(y, np.ndarray) and y.shape == (3, 1, 2, 2) and not bls.device_tensors
    assert "answered shape (0, 1, 2, 2) for a batch of 3 slices on the device" in pb.warnings[0]
