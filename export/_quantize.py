"""Static int8 quantization of a segmentation ONNX graph, verified on masks against the float graph.

ONNX Runtime's QDQ format: per-channel int8 weights, uint8 activations with ranges calibrated
on representative inputs (MinMax). On CPUs with AVX-512 VNNI / AVX-VNNI its int8 convolutions
run faster than float. The serving head (every node after the network's last Conv:
softmax-like sums, sigmoid) stays in float, so the probabilities keep their resolution around the
0.5 threshold. The quantized graph is accepted only when its masks agree with the float graph's
on a separate set of check inputs (pooled Dice >= ``min_dice``); otherwise `ExportError`.

The check is on the graph's first output. A second output (the slice classifier's class maps)
is carried along: its MatMul on the last feature maps is downstream of the last Conv, so it
stays in float too, and only the quantized features feeding it differ (tests/export bound it).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from covidet.export._onnx import ExportError
from covidet.metrics import dice

__all__ = ["DEFAULT_MIN_DICE", "QuantizeReport", "head_nodes", "quantize_onnx"]

#: Masks of the int8 graph must overlap the float graph's by at least this (pooled Dice).
DEFAULT_MIN_DICE = 0.98


@dataclass(frozen=True)
class QuantizeReport:
    """What a quantized graph was checked on and how close it came to the float graph."""

    path: Path
    #: pooled Dice of the int8 masks (prob > threshold) against the float ones, per check set
    dice: float
    #: largest absolute probability difference over the check inputs
    max_abs_error: float
    #: foreground pixels of the float masks over the check inputs (what the Dice stands on)
    foreground: int
    n_calibration: int
    n_check: int

    def to_json(self) -> dict[str, float | int | str]:
        return {
            "dice": round(self.dice, 6),
            "max_abs_error": round(self.max_abs_error, 6),
            "foreground": self.foreground,
            "n_calibration": self.n_calibration,
            "n_check": self.n_check,
        }


def head_nodes(path: Path) -> list[str]:
    """Names of the nodes downstream of the graph's last Conv (the serving head)."""
    import onnx

    graph = onnx.load(str(path)).graph
    convs = [i for i, n in enumerate(graph.node) if n.op_type == "Conv"]
    if not convs:
        raise ExportError(f"{path.name}: no Conv node; only convolutional graphs are quantized")
    reached = set(graph.node[convs[-1]].output)
    names = []
    for node in graph.node[convs[-1] + 1 :]:  # ONNX graphs are topologically sorted
        if reached.intersection(node.input):
            reached.update(node.output)
            names.append(node.name)
    return names


def _batches(x: np.ndarray, batch: int) -> Iterator[np.ndarray]:
    for i in range(0, x.shape[0], batch):
        yield np.ascontiguousarray(x[i : i + batch], np.float32)


def _run(path: Path, x: np.ndarray, batch: int) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name, first = sess.get_inputs()[0].name, sess.get_outputs()[0].name
    return np.concatenate([sess.run([first], {name: b})[0] for b in _batches(x, batch)])


def quantize_onnx(
    src: Path | str,
    dst: Path | str,
    calibration: np.ndarray,
    check: np.ndarray,
    *,
    min_dice: float = DEFAULT_MIN_DICE,
    threshold: float = 0.5,
    batch: int = 8,
) -> QuantizeReport:
    """Quantize the float graph ``src`` (one input; its first output: probabilities) to ``dst``.

    ``calibration`` and ``check`` are model inputs ([N, C, H, W] float32, as the pipeline builds
    them) from different scans. Raises `ExportError` when the check masks have no foreground
    (nothing to compare) or the int8 masks' Dice against the float ones is below ``min_dice``.
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = Path(src), Path(dst)
    if calibration.shape[0] == 0 or check.shape[0] == 0:
        raise ExportError(f"{src.name}: quantization needs calibration and check inputs; got none")
    input_name = onnx.load(str(src)).graph.input[0].name
    ref = _run(src, check, batch)  # the float answer first: nothing to quantize for without foreground
    ref_mask = ref > threshold
    foreground = int(ref_mask.sum())
    if foreground == 0:
        raise ExportError(
            f"{src.name}: the float model finds no foreground in the {check.shape[0]} check inputs, "
            "so int8 masks cannot be compared; check with scans that contain it"
        )

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = ({input_name: b} for b in _batches(calibration, batch))

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        # constant folding and shape inference first, as ONNX Runtime recommends (the symbolic
        # pass cannot resolve the dynamic H/W of the U-Net's up-sampling; plain shape inference can)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        # The quantizer logs through the root logger, e.g. that the rank-1 scales of DenseNet's
        # pre-activation BatchNorm take one quantization scale instead of one per channel (as
        # meant); the mask check below is the judge of the result.
        root, level = logging.getLogger(), logging.getLogger().level
        root.setLevel(logging.ERROR)
        try:
            quantize_static(
                str(pre),
                str(dst),
                _Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=head_nodes(pre),
            )
        finally:
            root.setLevel(level)
    got = _run(dst, check, batch)
    got_mask = got > threshold
    report = QuantizeReport(
        dst,
        dice(ref_mask, got_mask),
        float(np.abs(got - ref).max()),
        foreground,
        int(calibration.shape[0]),
        int(check.shape[0]),
    )
    if not np.isfinite(report.max_abs_error) or report.dice < min_dice:
        raise ExportError(
            f"{src.name}: int8 masks differ from float: Dice {report.dice:.4f} < {min_dice} "
            f"(max abs error {report.max_abs_error:.3g}) on {check.shape[0]} check inputs; "
            "serve the float graph (profile cpu) or calibrate on scans like the ones served"
        )
    return report
