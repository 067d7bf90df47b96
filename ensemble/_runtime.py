"""Slice-model runtimes: ONNX Runtime (cpu profile) and PyTorch (gpu-torch profile).

Both run one batch of slices (a numpy array) and return the model's first output, or with
``outputs`` the ones asked for (the slice classifier has a second one, its class maps, computed
only when asked for). They are used by the Triton slice models' ``model.py`` and, in-process, by
the evaluation and the baselines.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from covidet import _contract as C
from covidet.ensemble._memory import usable_cores

__all__ = [
    "COMPILE_BUCKETS",
    "InProcessModels",
    "OnnxRunner",
    "Runner",
    "TorchRunner",
    "make_runner",
    "run_sequence",
]


class Runner(Protocol):
    """Runs one batch through one model."""

    def __call__(self, x: np.ndarray) -> np.ndarray: ...

    def outputs(self, x: np.ndarray, which: Sequence[int]) -> list[np.ndarray]:
        """The model's outputs at positions ``which`` for one batch."""
        ...


class OnnxRunner:
    """ONNX Runtime on the CPU with explicit thread settings and full graph optimisation."""

    def __init__(
        self,
        model_file: str | Path,
        *,
        intra_op_threads: int = 0,
        inter_op_threads: int = 1,
        allow_spinning: bool = True,
        mem_pattern: bool = True,
    ) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        # ORT plans (and keeps) one pre-sized activation block per input shape it has seen; the
        # dynamic batcher's batch sizes vary, so those blocks pile up. Without the plan,
        # activations come from the arena as needed: less memory per slice-model process at the
        # same speed (figures in benchmarks/README.md).
        opts.enable_mem_pattern = mem_pattern
        if not allow_spinning:
            # ORT's worker threads busy-wait between operators by default. In a server where
            # several sessions (and the pipeline's numpy work) share the cores, the spinning
            # burns cycles the others need; without it, idle workers sleep.
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = inter_op_threads
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(
            str(model_file), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.output_name = self.output_names[0]
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata: dict[str, Any] = json.loads(meta["covidet"]) if "covidet" in meta else {}
        # ONNX Runtime runs the whole graph unless told to run only what the fetched outputs
        # need: so the classifier's class maps cost nothing unless asked for
        self._run_options = ort.RunOptions()
        self._run_options.only_execute_path_to_fetches = True

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = self.session.run([self.output_name], {self.input_name: x}, self._run_options)[0]
        return np.asarray(out)

    def outputs(self, x: np.ndarray, which: Sequence[int]) -> list[np.ndarray]:
        names = [self.output_names[i] for i in which]
        return [np.asarray(o) for o in self.session.run(names, {self.input_name: x}, self._run_options)]


#: Batch sizes a compiled TorchRunner is specialised for: a batch is padded up to the next one, so
#: the dynamic batcher's 1..32 slices cost at most six compilations (and six CUDA graphs).
COMPILE_BUCKETS = (1, 2, 4, 8, 16, 32)


class TorchRunner:
    """PyTorch on CUDA (FP16, channels-last) or CPU, from a covidet checkpoint.

    ``compile_mode`` (e.g. ``"reduce-overhead"``: inductor kernels replayed as CUDA graphs, the
    gpu-torch profile's setting) compiles the module with `torch.compile`, specialised per batch
    size in `COMPILE_BUCKETS` (inputs padded up, outputs cut back). `forward` takes and returns
    torch tensors, so a Triton model can hand them over by DLPack without copies.
    """

    def __init__(
        self,
        checkpoint: str | Path,
        *,
        device: str = "cuda",
        fp16: bool = True,
        channels_last: bool = True,
        compile_mode: str | None = None,
    ) -> None:
        import torch

        from covidet.models import fold_weight_standardization, load_checkpoint, serving_module

        model, meta = load_checkpoint(checkpoint, map_location="cpu")
        self.metadata = meta.to_json() if hasattr(meta, "to_json") else {}
        module = serving_module(fold_weight_standardization(model), meta.architecture).eval()
        self.device = torch.device(device)
        self.dtype = torch.float16 if (fp16 and self.device.type == "cuda") else torch.float32
        module = module.to(self.device, self.dtype)
        self.channels_last = channels_last and self.device.type == "cuda"
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.compiled = bool(compile_mode)
        self.module = torch.compile(module, mode=compile_mode, dynamic=False) if compile_mode else module
        self._torch = torch

    def forward(self, t: Any) -> Any:
        """One batch as a torch tensor (any device, any float dtype) -> float32 output on the
        input's device: a batch that came on the GPU leaves on it (DLPack through BLS), one from
        the host goes back there."""
        return self.forward_outputs(t, (0,))[0]

    def forward_outputs(self, t: Any, which: Sequence[int]) -> list[Any]:
        """`forward` for the outputs at positions ``which`` (a module with one output has only 0).
        The classifier's class maps come with its scores from one pass: they cost one small
        product with the last features."""
        torch = self._torch
        n = int(t.shape[0])
        home = t.device
        with torch.inference_mode():
            t = t.to(self.device, self.dtype, non_blocking=True)
            if self.compiled:  # always a fresh (inference-mode) buffer: the graphs' guards match
                size = next((b for b in COMPILE_BUCKETS if b >= n), n)
                padded = t.new_zeros((size, *t.shape[1:]))
                padded[:n] = t
                t = padded
            if self.channels_last and t.ndim == 4:
                t = t.contiguous(memory_format=torch.channels_last)
            out = self.module(t)
            outs = out if isinstance(out, tuple) else (out,)
            return [outs[i][:n].float().to(home).contiguous() for i in which]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.forward(self._torch.from_numpy(x)).numpy())

    def outputs(self, x: np.ndarray, which: Sequence[int]) -> list[np.ndarray]:
        return [np.asarray(o.numpy()) for o in self.forward_outputs(self._torch.from_numpy(x), which)]


def run_sequence(runner: Runner, features: np.ndarray) -> np.ndarray:
    """One scan's slice features [S, F] through the GRU graph, which takes a batch of sequences
    [B, S, F]: a batch of one, its single row returned."""
    return runner(np.ascontiguousarray(features[np.newaxis], dtype=np.float32))[0]


def make_runner(parameters: Mapping[str, str], version_dir: Path) -> Runner:
    """Build the runner a slice model's config asks for (``runtime`` parameter)."""
    runtime = parameters.get("runtime", "onnxruntime")
    if runtime == "onnxruntime":
        threads = int(parameters.get("intra_op_threads", "0") or 0)
        return OnnxRunner(
            version_dir / parameters.get("model_file", "model.onnx"),
            intra_op_threads=threads,
            allow_spinning=parameters.get("allow_spinning", "true") == "true",
            mem_pattern=parameters.get("mem_pattern", "true") == "true",
        )
    if runtime == "torch":
        return TorchRunner(
            parameters["checkpoint"],
            device=parameters.get("device", "cuda"),
            fp16=parameters.get("fp16", "true") == "true",
            compile_mode=None if parameters.get("compile", "none") == "none" else parameters["compile"],
        )
    raise ValueError(f"unknown runtime {runtime!r}; expected 'onnxruntime' or 'torch'")


class InProcessModels:
    """The repository's models run in-process: an `InferFn` for `ScanPipeline` without a server.

    This is the 'batched ONNX Runtime, no server' baseline and the engine of the evaluation.
    """

    def __init__(self, repository: Path, *, threads: int | None = None) -> None:
        threads = threads or usable_cores()
        self.runners: dict[str, Runner] = {}
        for spec in (*C.SLICE_MODELS, C.GRU_FUSION):
            self.runners[spec.name] = OnnxRunner(
                repository / spec.name / "1" / "model.onnx", intra_op_threads=threads
            )
        # One worker: the runners already use all cores; a queue keeps batches from thrashing.
        self._pool = ThreadPoolExecutor(max_workers=1)

    async def infer(self, model: str, x: np.ndarray, outputs: Sequence[str] | None = None) -> Any:
        """The model's first output for ``x``; with ``outputs`` (contract names), a tuple of those."""
        loop = asyncio.get_running_loop()
        runner = self.runners[model]
        if model == C.GRU_FUSION.name:
            return await loop.run_in_executor(self._pool, run_sequence, runner, x)
        if outputs is None:
            return await loop.run_in_executor(self._pool, runner, x)
        spec = C.model_spec(model)
        which = [spec.outputs.index(spec.output(name)) for name in outputs]
        return tuple(await loop.run_in_executor(self._pool, runner.outputs, x, which))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
