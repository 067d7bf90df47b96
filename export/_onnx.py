"""Checkpoint -> ONNX, with weight standardization folded and the output verified against PyTorch."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from covidet.errors import ArtifactError
from covidet.models import CheckpointMeta, fold_weight_standardization, serving_module

__all__ = [
    "ONNX_INPUT",
    "ONNX_OUTPUT",
    "ExportError",
    "ExportReport",
    "example_input",
    "export_onnx",
    "verify_onnx",
]

ONNX_INPUT = "input"
ONNX_OUTPUT = "output"


class ExportError(ArtifactError, RuntimeError):
    """Export failed or the exported graph does not reproduce PyTorch within tolerance."""


@dataclass(frozen=True)
class ExportReport:
    path: Path
    max_abs_error: float
    max_rel_error: float
    checked_shapes: tuple[tuple[int, ...], ...]


def example_input(meta: CheckpointMeta, batch: int, seq: int = 7) -> torch.Tensor:
    """A random input of the right shape for the checkpoint (batch of slices or of sequences)."""
    g = torch.Generator().manual_seed(batch * 1000 + seq)
    if meta.architecture == "gru_fusion":
        return torch.randn(batch, seq, int(meta.extra.get("feature_dim", 256)), generator=g)
    h, w = getattr(meta.preprocessing, "input_size", (224, 224))
    ch = 3 if meta.architecture in ("resnet152_cls", "resnext50_ws_gn") else 1
    return torch.rand(batch, ch, h, w, generator=g)


def verify_onnx(
    module: nn.Module, path: Path, inputs: list[torch.Tensor], *, atol: float, rtol: float
) -> tuple[float, float]:
    """Max abs / rel error of ONNX Runtime against PyTorch on ``inputs``; raises above tolerance."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    max_abs = max_rel = 0.0
    for x in inputs:
        with torch.no_grad():
            ref = module(x).numpy()
        got = sess.run([ONNX_OUTPUT], {ONNX_INPUT: x.numpy()})[0]
        if got.shape != ref.shape:
            raise ExportError(
                f"ONNX output shape {got.shape} != PyTorch {ref.shape} for input {tuple(x.shape)}"
            )
        err = np.abs(got - ref)
        max_abs = max(max_abs, float(err.max()))
        max_rel = max(max_rel, float((err / (np.abs(ref) + 1e-3)).max()))
        if not np.allclose(got, ref, atol=atol, rtol=rtol):
            raise ExportError(
                f"{path.name}: ONNX Runtime differs from PyTorch for input {tuple(x.shape)}: "
                f"max abs error {float(err.max()):.3g} > atol {atol} (rtol {rtol})"
            )
    return max_abs, max_rel


def export_onnx(
    model: nn.Module,
    meta: CheckpointMeta,
    out_path: str | Path,
    *,
    opset: int = 17,
    check: bool = True,
    atol: float = 1e-4,
    rtol: float = 1e-3,
) -> ExportReport:
    """Export with a dynamic slice axis (and dynamic H/W, or S for the GRU); verify numerically."""
    import onnx

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    module = serving_module(fold_weight_standardization(model).eval(), meta.architecture)
    if meta.architecture == "gru_fusion":
        axes = {ONNX_INPUT: {0: "batch", 1: "slices"}, ONNX_OUTPUT: {0: "batch"}}
    elif meta.architecture in ("lung_unet", "deeplabv3plus_densenet121"):
        axes = {
            ONNX_INPUT: {0: "slices", 2: "height", 3: "width"},
            ONNX_OUTPUT: {0: "slices", 2: "height", 3: "width"},
        }
    else:
        axes = {ONNX_INPUT: {0: "slices"}, ONNX_OUTPUT: {0: "slices"}}
    # The exporter warns about GRU batch sizes and traced shape checks; the numerical check
    # below is what decides whether the graph is right.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example_input(meta, 1 if meta.architecture == "gru_fusion" else 2),),
            str(out_path),
            input_names=[ONNX_INPUT],
            output_names=[ONNX_OUTPUT],
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )
    proto = onnx.load(str(out_path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "covidet", json.dumps(meta.to_json())
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out_path))
    shapes: tuple[tuple[int, ...], ...] = ()
    max_abs = max_rel = 0.0
    if check:
        inputs = [example_input(meta, 1, seq=1), example_input(meta, 5, seq=7)]
        shapes = tuple(tuple(x.shape) for x in inputs)
        max_abs, max_rel = verify_onnx(module, out_path, inputs, atol=atol, rtol=rtol)
    return ExportReport(out_path, max_abs, max_rel, shapes)
