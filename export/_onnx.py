"""Checkpoint -> ONNX, with weight standardization folded and the outputs verified against PyTorch.

One output, `ONNX_OUTPUT`, for every model; the slice classifier (``resnet152_cls``) has a second,
`ONNX_CLASS_MAPS`, its class activation maps (see `covidet.models._explain`). The class maps
cost one small MatMul on the last feature maps; a caller that does not need them asks for
`ONNX_OUTPUT` alone (ONNX Runtime skips the branch with ``only_execute_path_to_fetches``).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from covidet.errors import ArtifactError
from covidet.models import CheckpointMeta, fold_weight_standardization, serving_module, supports_cam

__all__ = [
    "ONNX_CLASS_MAPS",
    "ONNX_INPUT",
    "ONNX_OUTPUT",
    "ExportError",
    "ExportReport",
    "example_input",
    "export_onnx",
    "onnx_outputs",
    "verify_onnx",
]

ONNX_INPUT = "input"
#: The served answer (probabilities, masks, features): always the graph's first output.
ONNX_OUTPUT = "output"
#: The slice classifier's second output: class activation maps [N, n_classes, h, w] on its last
#: convolutional grid (`covidet.models.class_activation_maps`; equal to Grad-CAM before its ReLU).
ONNX_CLASS_MAPS = "class_maps"


def onnx_outputs(architecture: str) -> tuple[str, ...]:
    """The exported graph's output names, in order: `ONNX_OUTPUT`, then `ONNX_CLASS_MAPS` for an
    architecture whose class maps are its Grad-CAM (the serving module returns both)."""
    return (ONNX_OUTPUT, ONNX_CLASS_MAPS) if supports_cam(architecture) else (ONNX_OUTPUT,)


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


def _outputs(module: nn.Module, x: torch.Tensor) -> tuple[np.ndarray, ...]:
    with torch.no_grad():
        out = module(x)
    return tuple(t.numpy() for t in (out if isinstance(out, tuple) else (out,)))


def verify_onnx(
    module: nn.Module, path: Path, inputs: list[torch.Tensor], *, atol: float, rtol: float
) -> tuple[float, float]:
    """Max abs / rel error of ONNX Runtime against PyTorch on ``inputs``, over every output
    (matched by position); raises above tolerance. Also checks that asking for `ONNX_OUTPUT`
    alone gives exactly what the full run gives (what a caller that wants no class maps does)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    max_abs = max_rel = 0.0
    for x in inputs:
        refs = _outputs(module, x)
        if len(names) != len(refs) or names[0] != ONNX_OUTPUT:
            raise ExportError(
                f"{path.name}: ONNX outputs {names}, PyTorch gives {len(refs)} "
                f"(the first must be {ONNX_OUTPUT!r})"
            )
        gots = sess.run(names, {ONNX_INPUT: x.numpy()})
        for name, got, ref in zip(names, gots, refs, strict=True):
            if got.shape != ref.shape:
                raise ExportError(
                    f"ONNX output {name!r} shape {got.shape} != PyTorch {ref.shape} "
                    f"for input {tuple(x.shape)}"
                )
            err = np.abs(got - ref)
            max_abs = max(max_abs, float(err.max()))
            max_rel = max(max_rel, float((err / (np.abs(ref) + 1e-3)).max()))
            if not np.allclose(got, ref, atol=atol, rtol=rtol):
                raise ExportError(
                    f"{path.name}: ONNX Runtime differs from PyTorch in {name!r} for input "
                    f"{tuple(x.shape)}: max abs error {float(err.max()):.3g} > atol {atol} (rtol {rtol})"
                )
        if len(names) > 1:
            alone = sess.run([ONNX_OUTPUT], {ONNX_INPUT: x.numpy()})[0]
            if not np.array_equal(alone, gots[0]):
                raise ExportError(
                    f"{path.name}: {ONNX_OUTPUT!r} alone differs from {ONNX_OUTPUT!r} with {names[1:]}"
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
    names = list(onnx_outputs(meta.architecture))
    axes: dict[str, dict[int, str]]
    if meta.architecture == "gru_fusion":
        axes = {ONNX_INPUT: {0: "batch", 1: "slices"}, ONNX_OUTPUT: {0: "batch"}}
    elif meta.architecture in ("lung_unet", "deeplabv3plus_densenet121"):
        axes = {
            ONNX_INPUT: {0: "slices", 2: "height", 3: "width"},
            ONNX_OUTPUT: {0: "slices", 2: "height", 3: "width"},
        }
    else:  # the classifiers' input size is fixed, so is the class maps' grid
        axes = {name: {0: "slices"} for name in (ONNX_INPUT, *names)}
    # The exporter warns about GRU batch sizes and traced shape checks; the numerical check
    # below is what decides whether the graph is right.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example_input(meta, 1 if meta.architecture == "gru_fusion" else 2),),
            str(out_path),
            input_names=[ONNX_INPUT],
            output_names=names,
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
