"""Baselines measured in the same run as the server, and FLOP accounting.

(a) ``naive``: PyTorch eager, one slice at a time, in-process (how research code runs).
(b) ``onnx``: the same ONNX models with ONNX Runtime, batched, in-process, no server — the floor.
``torch``: PyTorch eager batched in-process (FP16 on CUDA) — the GPU profiles' floor.
All run the exact serving pipeline (`ScanPipeline`) with a different ``infer``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from covidet import _contract as C
from covidet.bench._load import LevelResult, Sample, Scan
from covidet.ensemble import InferFn, InProcessModels, PipelineConfig, ScanPipeline

__all__ = ["flops_per_scan", "measure_peak_flops", "run_naive", "run_onnx", "run_prepost", "run_torch"]


def _sequential(pipe: ScanPipeline, scans: Sequence[Scan], n: int, mode: str) -> LevelResult:
    samples = []
    t0 = time.perf_counter()
    for i in range(n):
        scan = scans[i % len(scans)]
        s0 = time.perf_counter()
        stages: dict[str, float] = {}
        try:
            asyncio.run(pipe.run(scan.hu, np.asarray(scan.spacing, np.float32), timings=stages))
        except ValueError as exc:  # the pipeline's answer to bad input (e.g. no lung): counted, not fatal
            error = f"{type(exc).__name__}: {exc}"[:200]
            samples.append(Sample(s0, time.perf_counter() - s0, False, scan.hu.shape[0], error))
            continue
        samples.append(Sample(s0, time.perf_counter() - s0, True, scan.hu.shape[0], stages=stages))
    return LevelResult(mode, 1, time.perf_counter() - t0, samples)


def run_onnx(repository: Path, scans: Sequence[Scan], n: int) -> LevelResult:
    """Baseline (b): ONNX Runtime, batched (32 slices), in-process."""
    models = InProcessModels(repository)
    try:
        pipe = ScanPipeline(PipelineConfig.from_repository(repository), models.infer)
        _sequential(pipe, scans, 1, "warmup")
        return _sequential(pipe, scans, n, "onnx-inprocess")
    finally:
        models.close()


class _Replay:
    """The slice models' outputs recorded for each scan, then replayed: what a replayed scan
    costs is the pipeline's own work (windowing, resizing, masks, selection, fusion)."""

    def __init__(self, infer: InferFn) -> None:
        self._record = infer
        self._outputs: dict[tuple[int, str, int], tuple[tuple[int, ...], Any]] = {}
        self._calls: dict[str, int] = {}
        self.scan = 0
        self.recording = True

    def start(self, scan: int, *, recording: bool) -> None:
        self.scan, self.recording = scan, recording
        self._calls.clear()

    async def infer(self, model: str, x: Any) -> Any:
        # a scan's requests to one model come in chunk order (one FIFO gate per stream)
        n = self._calls[model] = self._calls.get(model, 0) + 1
        key = (self.scan, model, n)
        if self.recording:
            y = await self._record(model, x)
            self._outputs[key] = (tuple(x.shape), y)
            return y
        shape, y = self._outputs[key]
        if shape != tuple(x.shape):
            raise RuntimeError(f"replay of {model} call {n}: input {x.shape}, recorded {shape}")
        return y


def run_prepost(
    repository: Path,
    scans: Sequence[Scan],
    n: int,
    *,
    checkpoints: Path | None = None,
    device: str = "cpu",
) -> LevelResult:
    """The pipeline's own work per scan on one core, as ``repository`` configures it (its
    pre/post device: cuda for the GPU profiles): every model output replayed from a recorded run,
    torch on one thread. Its scans/s is what one CPU core of pre/post-processing can feed; a GPU
    node needs (target scans/s) / (this) cores for it, besides the models and Triton.

    The recording runs ``repository``'s ONNX models in-process, or with ``checkpoints`` the
    PyTorch models batched on ``device`` (the GPU profiles, which have no ONNX graphs).
    """
    import torch

    config = PipelineConfig.from_repository(repository)
    if checkpoints is not None and config.device:  # pre/post on the device the torch models run on
        config = replace(config, device=device)
    models: InProcessModels | None = None
    record: InferFn
    if checkpoints is None:
        models = InProcessModels(repository)
        record = models.infer
    else:
        record = _torch_infer(checkpoints, device, per_slice=False)
    replay = _Replay(record)
    pipe = ScanPipeline(config, replay.infer)
    threads = torch.get_num_threads()
    try:
        for i, scan in enumerate(scans):  # record (scans the pipeline rejects are recorded too)
            replay.start(i, recording=True)
            try:
                asyncio.run(pipe.run(scan.hu, np.asarray(scan.spacing, np.float32)))
            except ValueError:
                pass
        torch.set_num_threads(1)
        samples = []
        t0 = time.perf_counter()
        for k in range(n):
            i = k % len(scans)
            replay.start(i, recording=False)
            samples.extend(_sequential(pipe, [scans[i]], 1, "prepost").samples)
        mode = "prepost-1core" + (f"-{config.device}" if config.device else "")
        return LevelResult(mode, 1, time.perf_counter() - t0, samples)
    finally:
        torch.set_num_threads(threads)
        if models is not None:
            models.close()


def _torch_infer(checkpoints: Path, device: str, *, per_slice: bool) -> InferFn:
    """PyTorch eager models as an `InferFn`: float32 one slice per pass (``per_slice``), or
    batched as the server batches (FP16 and channels-last on CUDA, as the gpu-torch profile)."""
    from covidet.ensemble import TorchRunner, run_sequence

    runners = {
        spec.name: TorchRunner(checkpoints / spec.name, device=device, fp16=not per_slice)
        for spec in (*C.SLICE_MODELS, C.GRU_FUSION)
    }

    async def infer(model: str, x: Any) -> Any:
        if model == C.GRU_FUSION.name:
            return run_sequence(runners[model], x)
        if per_slice:
            return np.concatenate([runners[model](x[i : i + 1]) for i in range(x.shape[0])])
        if isinstance(x, np.ndarray):
            return runners[model](x)
        return runners[model].forward(x)  # a tensor on the device (device_tensors): stays there

    return infer


def _torch_pipeline(checkpoints: Path, repository: Path, device: str, *, per_slice: bool) -> ScanPipeline:
    """The serving pipeline over `_torch_infer` models."""
    cfg = PipelineConfig.from_repository(repository)
    if per_slice:  # as research code runs: one slice per pass, all pre/post-processing on the CPU
        cfg = replace(cfg, slice_batch=1, device=None)
    elif cfg.device:  # the profile's pre/post device (cuda for the GPU profiles) follows the models'
        cfg = replace(cfg, device=device)
    return ScanPipeline(cfg, _torch_infer(checkpoints, device, per_slice=per_slice))


def run_naive(
    checkpoints: Path, repository: Path, scans: Sequence[Scan], n: int, *, device: str = "cpu"
) -> LevelResult:
    """Baseline (a): PyTorch eager, float32, one slice per forward pass, in-process."""
    pipe = _torch_pipeline(checkpoints, repository, device, per_slice=True)
    if device != "cpu":  # CUDA context, cuDNN algorithm choice: not part of a scan
        _sequential(pipe, scans, 1, "warmup")
    return _sequential(pipe, scans, n, f"naive-torch-{device}" if device != "cpu" else "naive-torch")


def run_torch(
    checkpoints: Path, repository: Path, scans: Sequence[Scan], n: int, *, device: str = "cuda"
) -> LevelResult:
    """PyTorch eager batched in-process (FP16 channels-last on CUDA): the GPU profiles' floor."""
    pipe = _torch_pipeline(checkpoints, repository, device, per_slice=False)
    _sequential(pipe, scans, 1, "warmup")
    return _sequential(pipe, scans, n, f"torch-inprocess-{device}")


def _model_flops(checkpoints: Path) -> dict[str, float]:
    """FLOPs of one slice (one sequence step for the GRU) per model, counted by torch."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from covidet.export import example_input
    from covidet.models import load_checkpoint, serving_module

    out = {}
    for spec in (*C.SLICE_MODELS, C.GRU_FUSION):
        model, meta = load_checkpoint(checkpoints / spec.name)
        module = serving_module(model, meta.architecture)
        x = example_input(meta, 1, seq=35)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            module(x)
        out[spec.name] = float(counter.get_total_flops())
    return out


def flops_per_scan(checkpoints: Path, scan: Scan, n_used: int = 35) -> dict[str, Any]:
    """Model FLOPs of one scan: lung on every slice, classifiers on the selected slices, lesion
    on the lung slices (approximated by all slices), GRU once (35-step sequence)."""
    per = _model_flops(checkpoints)
    s = scan.hu.shape[0]
    total = (
        per[C.LUNG_SEG.name] * s
        + (per[C.SLICE_CLASSIFIER.name] + per[C.SLICE_ENCODER.name]) * min(n_used, s)
        + per[C.LESION_SEG.name] * s
        + per[C.GRU_FUSION.name]
    )
    return {"per_slice": per, "per_scan": total}


def measure_peak_flops(seconds: float = 2.0, device: str = "cpu") -> float:
    """Achievable matmul FLOP/s in torch: FP32 on the CPU (all cores), FP16 on CUDA (tensor cores:
    what the FP16 profiles run on)."""
    import torch

    n, dtype = (1024, torch.float32) if device == "cpu" else (8192, torch.float16)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync = torch.cuda.synchronize if device != "cpu" else (lambda: None)
    sync()
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        count += 1
        if count % 16 == 0:
            sync()
    sync()
    return 2.0 * n**3 * count / (time.perf_counter() - t0)
