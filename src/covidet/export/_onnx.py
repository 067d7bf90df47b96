"""Checkpoint -> ONNX, with weight standardization folded and the output verified against PyTorch."""

from __future__ import annotations

import copy
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from covidet.models import CheckpointMeta, WSConv2d, standardize_weight

__all__ = [
    "ONNX_INPUT",
    "ONNX_OUTPUT",
    "ExportError",
    "ExportReport",
    "example_input",
    "export_onnx",
    "fold_weight_standardization",
    "serving_module",
    "verify_onnx",
]

ONNX_INPUT = "input"
ONNX_OUTPUT = "output"


class ExportError(RuntimeError):
    """Export failed or the exported graph does not reproduce PyTorch within tolerance."""


@dataclass(frozen=True)
class ExportReport:
    path: Path
    max_abs_error: float
    max_rel_error: float
    checked_shapes: tuple[tuple[int, ...], ...]


def fold_weight_standardization(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose WSConv2d layers are plain Conv2d with standardized weights."""
    model = copy.deepcopy(model)
    for _, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, WSConv2d):
                conv = nn.Conv2d(
                    child.in_channels,
                    child.out_channels,
                    child.kernel_size,  # type: ignore[arg-type]
                    child.stride,  # type: ignore[arg-type]
                    child.padding,  # type: ignore[arg-type]
                    child.dilation,  # type: ignore[arg-type]
                    child.groups,
                    bias=child.bias is not None,
                )
                with torch.no_grad():
                    conv.weight.copy_(standardize_weight(child.weight, child.ws_convention))
                    if child.bias is not None:
                        conv.bias.copy_(child.bias)  # type: ignore[union-attr]
                setattr(module, child_name, conv)
    return model


class _Serving(nn.Module):
    def __init__(self, model: nn.Module, head: str) -> None:
        super().__init__()
        self.model, self.head = model, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x)
        if self.head == "lung":  # P(lung) = 1 - P(background): 3 classes merged to binary
            # = 1 - 1 / (1 + sum_c exp(y_c - y_0)), written out element-wise: ONNX Runtime's
            # Softmax over the channel axis of NCHW transposes the whole map (13% of the demo
            # U-Net's time; the lung model 5.24 -> 4.80 ms/slice on 1 core), and only P(background)
            # is wanted. Same value as the softmax to float rounding (max 1.2e-7 on phantoms).
            rest = torch.exp(y[:, 1:2] - y[:, :1])
            for c in range(2, y.shape[1]):
                rest = rest + torch.exp(y[:, c : c + 1] - y[:, :1])
            return 1.0 - 1.0 / (1.0 + rest)
        if self.head == "softmax":
            return torch.softmax(y, dim=1)
        if self.head == "sigmoid":
            return torch.sigmoid(y)
        return y


_HEADS = {
    "lung_unet": "lung",
    "resnet152_cls": "softmax",
    "resnext50_ws_gn": "identity",
    "gru_fusion": "identity",  # the GRU head already ends in a sigmoid
    "deeplabv3plus_densenet121": "sigmoid",
}


def serving_module(model: nn.Module, architecture: str) -> nn.Module:
    """The network plus its serving head (what ONNX, TensorRT and the torch runtime all run)."""
    if architecture not in _HEADS:
        raise KeyError(f"no serving head for {architecture!r}; valid: {', '.join(_HEADS)}")
    return _Serving(model, _HEADS[architecture]).eval()


def example_input(meta: CheckpointMeta, batch: int, seq: int = 7) -> torch.Tensor:
    """A random input of the right shape for the checkpoint (batch of slices or of sequences)."""
    g = torch.Generator().manual_seed(batch * 1000 + seq)
    if meta.architecture == "gru_fusion":
        return torch.randn(batch, seq, int(meta.extra.get("feature_dim", 256)), generator=g)
    h, w = meta.preprocessing.get("input_size", (224, 224))
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
