"""ONNX -> TensorRT engine (FP16, one optimization profile for slice batches, timing cache).

The engine keeps the ONNX graph's input and output names (`ONNX_INPUT`; `ONNX_OUTPUT`, and
`ONNX_CLASS_MAPS` for the slice classifier): Triton binds TensorRT tensors by name, so the order
of the engine's outputs does not matter, only that the names survive the parse.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from covidet.export._onnx import ONNX_OUTPUT, ExportError

__all__ = ["build_tensorrt_engine", "tensorrt_available"]


def tensorrt_available() -> str | None:
    """None when TensorRT and a CUDA GPU are usable, else the reason why not."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "the `tensorrt` Python package is not installed"
    try:
        import torch

        if not torch.cuda.is_available():
            return "no CUDA GPU is visible"
    except ImportError:
        return "torch is not installed (needed to check for a GPU)"
    return None


def build_tensorrt_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    *,
    input_hw: Sequence[int],
    channels: int | None = None,
    min_batch: int = 1,
    opt_batch: int = 16,
    max_batch: int = 32,
    fp16: bool = True,
    timing_cache: str | Path | None = None,
    workspace_gb: float = 4.0,
) -> Path:
    """Build a serialized engine for this GPU and TensorRT version (never ship one built elsewhere)."""
    reason = tensorrt_available()
    if reason:
        raise ExportError(
            f"TensorRT is not available here ({reason}): build engines on the GPU node that "
            "serves them, e.g. inside NVIDIA's Triton container (`pip install tensorrt`), or use "
            "the gpu-torch profile"
        )
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse {onnx_path}: {errors}")
    outputs = [network.get_output(i).name for i in range(network.num_outputs)]
    if ONNX_OUTPUT not in outputs:
        raise ExportError(f"{onnx_path}: no output named {ONNX_OUTPUT!r} (outputs: {outputs}); re-export it")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if fp16 and builder.platform_has_fast_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    cache_bytes = b""
    if timing_cache and Path(timing_cache).is_file():
        cache_bytes = Path(timing_cache).read_bytes()
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    inp = network.get_input(0)
    ch = channels or int(inp.shape[1])
    h, w = int(input_hw[0]), int(input_hw[1])
    profile = builder.create_optimization_profile()
    profile.set_shape(inp.name, (min_batch, ch, h, w), (opt_batch, ch, h, w), (max_batch, ch, h, w))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build an engine from {onnx_path}")
    out = Path(engine_path)
    out.write_bytes(bytes(serialized))
    if timing_cache:
        Path(timing_cache).write_bytes(bytes(config.get_timing_cache().serialize()))
    return out
