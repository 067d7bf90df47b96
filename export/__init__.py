"""Export: checkpoint -> ONNX (verified against PyTorch) -> int8 ONNX (checked on masks, CPU) or
TensorRT engine (on GPU nodes)."""

from __future__ import annotations

from covidet.export._onnx import (
    ONNX_CLASS_MAPS,
    ONNX_INPUT,
    ONNX_OUTPUT,
    ExportError,
    ExportReport,
    example_input,
    export_onnx,
    onnx_outputs,
    verify_onnx,
)
from covidet.export._quantize import DEFAULT_MIN_DICE, QuantizeReport, quantize_onnx
from covidet.export._tensorrt import build_tensorrt_engine, tensorrt_available

__all__ = [
    "DEFAULT_MIN_DICE",
    "ONNX_CLASS_MAPS",
    "ONNX_INPUT",
    "ONNX_OUTPUT",
    "ExportError",
    "ExportReport",
    "QuantizeReport",
    "build_tensorrt_engine",
    "example_input",
    "export_onnx",
    "onnx_outputs",
    "quantize_onnx",
    "tensorrt_available",
    "verify_onnx",
]
