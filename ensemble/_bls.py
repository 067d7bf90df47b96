"""The pipeline step's `InferFn` inside Triton: one async BLS request per chunk of slices.

Host arrays go as ``pb_utils.Tensor``; with `PipelineConfig.device_tensors` (the GPU profiles)
torch tensors built on the GPU go by DLPack, the answer is asked for in GPU memory, and comes
back as a torch tensor there: the slice models' inputs and outputs never cross to the host (the
Python backend hands GPU tensors between processes by CUDA IPC).

Should the device path fail where the host one works (a Python backend without GPU tensor
support, a CUDA memory pool too small, CUDA IPC refused in a container), the request is sent
again through the host, with a warning in the log: slower, but it serves. The instance then keeps
to the host for a while and tries the device path again, after `RETRY_FIRST_S`, then twice as
long after each failed try, up to `RETRY_MAX_S`: a pool that was full for a moment costs a
minute of host copies, a node that never allows CUDA IPC one try every ten minutes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from covidet import _contract as C
from covidet.ensemble._errors import bls_error
from covidet.ensemble._preprocess import on_host

__all__ = ["FALLBACK_WARNING", "RETRY_FIRST_S", "RETRY_MAX_S", "BlsInfer"]

#: What the server log says when an instance leaves the device path (tests and checks grep it).
FALLBACK_WARNING = "slice tensors through BLS on the device failed"

#: Seconds on the host after the device path first failed, before it is tried again.
RETRY_FIRST_S = 60.0
#: The longest wait between tries of a device path that keeps failing.
RETRY_MAX_S = 600.0


class BlsInfer:
    """``await infer(model, batch)`` through BLS; ``pb_utils`` is Triton's module (a stand-in in
    tests). ``device``: the pipeline's torch device, whose tensors are passed as they are when
    ``device_tensors``."""

    def __init__(
        self,
        pb_utils: Any,
        *,
        device: str | None = None,
        device_tensors: bool = False,
        on_fallback: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pb = pb_utils
        self._wanted = bool(device_tensors and device)
        self._on_fallback = on_fallback
        self._clock = clock
        self._host_until = 0.0  # the device path is left alone until then
        self._backoff = 0.0  # seconds before the next try; 0 while the device path works
        self._preferred: Any = None
        if self._wanted and str(device).startswith("cuda"):
            import torch

            index = torch.device(str(device)).index or 0
            self._preferred = pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_GPU, index)

    @property
    def device_tensors(self) -> bool:
        """Whether the device path is in use now (asked for, and not waiting after a failure)."""
        return self._wanted and self._backoff == 0

    async def __call__(self, model: str, x: Any, outputs: Sequence[str] | None = None) -> Any:
        """The model's first output for ``x``; with ``outputs`` (contract names), a tuple of those
        (the slice classifier computes its class maps only when they are asked for)."""
        names = tuple(outputs) if outputs is not None else (C.model_spec(model).outputs[0].name,)
        ys = await self._route(model, x, names)
        return ys if outputs is not None else ys[0]

    async def _route(self, model: str, x: Any, outputs: tuple[str, ...]) -> tuple[Any, ...]:
        if not self._wanted or isinstance(x, np.ndarray) or self._clock() < self._host_until:
            return await self._send(model, x, outputs, device=False)
        retrying = self._backoff > 0
        if retrying:  # one chunk tries the device; the others keep to the host meanwhile
            self._host_until = self._clock() + self._backoff
        try:
            y = await self._send(model, x, outputs, device=True)
        except Exception as exc:
            y = await self._send(model, x, outputs, device=False)  # its error, if any, is the answer
            switching = self.device_tensors or retrying  # once per switch, not per chunk in flight
            self._backoff = min(RETRY_MAX_S, 2 * self._backoff) if retrying else RETRY_FIRST_S
            self._host_until = self._clock() + self._backoff
            if switching:
                if self._on_fallback is not None:
                    self._on_fallback()
                self.pb.Logger.log_warn(
                    f"covidet_pipeline: {FALLBACK_WARNING} ({exc}); this instance passes them "
                    f"through host memory for the next {self._backoff:.0f} s, then tries again"
                )
            return y
        if retrying:
            self._backoff, self._host_until = 0.0, 0.0
            self.pb.Logger.log_info("covidet_pipeline: slice tensors through BLS on the device again")
        return y

    async def _send(self, model: str, x: Any, outputs: tuple[str, ...], *, device: bool) -> tuple[Any, ...]:
        spec = C.model_spec(model)
        pb = self.pb
        if device:
            from torch.utils.dlpack import to_dlpack

            tensor = pb.Tensor.from_dlpack(spec.inputs[0].name, to_dlpack(x))
        else:  # a tensor built on the device is copied off it
            tensor = pb.Tensor(spec.inputs[0].name, np.ascontiguousarray(on_host(x)))
        kwargs = {"preferred_memory": self._preferred} if device and self._preferred is not None else {}
        request = pb.InferenceRequest(
            model_name=model, inputs=[tensor], requested_output_names=list(outputs), **kwargs
        )
        response = await request.async_exec()
        if response.has_error():
            raise bls_error(model, response.error().message())
        return tuple(self._output(spec, response, name, x, device) for name in outputs)

    def _output(self, spec: C.ModelSpec, response: Any, name: str, x: Any, device: bool) -> Any:
        model = spec.name
        out = self.pb.get_output_tensor_by_name(response, name)
        if out is None:
            y = None
        elif not device:
            y = out.as_numpy()
        else:
            from torch.utils.dlpack import from_dlpack

            y = from_dlpack(out.to_dlpack())
        if spec.max_batch_size and (y is None or y.ndim == 0 or y.shape[0] != x.shape[0]):
            # the Python backend answers a tensor it failed to move (e.g. a full CUDA memory pool)
            # with an empty one and no error: never fold that in as a result
            got = "nothing" if y is None else f"shape {tuple(y.shape)}"
            raise RuntimeError(
                f"{model} answered {got} for a batch of {x.shape[0]} slices"
                f"{' on the device' if device else ''}: see the server log"
            )
        return y
