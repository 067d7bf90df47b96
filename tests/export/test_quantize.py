"""int8 quantization of the segmentation graphs: checked against the float graph on masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from covidet import _contract as C
from covidet import ensemble as P
from covidet.export import ExportError, export_onnx, quantize_onnx
from covidet.export._quantize import head_nodes
from covidet.export._render import default_checkpoints
from covidet.models import load_checkpoint
from covidet.phantom import make_phantom
from covidet.preprocessing import LungRecord, as_kind


@pytest.fixture(scope="module")
def lung_graph(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LungRecord]:
    model, meta = load_checkpoint(default_checkpoints() / C.LUNG_SEG.name)
    path = tmp_path_factory.mktemp("q") / "lung.onnx"
    export_onnx(model, meta, path)
    return path, as_kind(meta.preprocessing, LungRecord)


def _inputs(record: LungRecord, seed: int) -> np.ndarray:
    scans = [make_phantom(k, n_slices=6, size=128, seed=seed + i).hu for i, k in enumerate(C.CLASS_NAMES)]
    return np.concatenate([P.lung_input(s, record) for s in scans])


def test_int8_lung_graph_matches_float_masks(lung_graph: tuple[Path, LungRecord], tmp_path: Path) -> None:
    src, record = lung_graph
    report = quantize_onnx(src, tmp_path / "q.onnx", _inputs(record, 300), _inputs(record, 400))
    assert report.dice >= 0.98 and report.foreground > 1000
    assert report.n_calibration == report.n_check == 24
    graph = onnx.load(str(tmp_path / "q.onnx")).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # the serving head stays float: no QuantizeLinear takes a head node's output
    head = set(head_nodes(src)) & {n.name for n in graph.node}
    producer = {o: n for n in graph.node for o in n.output}
    assert head and producer[graph.output[0].name].name in head
    quantized = [
        producer[n.input[0]] for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] in producer
    ]
    assert not [n.name for n in quantized if n.name in head]
    assert report.to_json()["dice"] == round(report.dice, 6)


def test_int8_is_refused_below_the_dice_bar(lung_graph: tuple[Path, LungRecord], tmp_path: Path) -> None:
    src, record = lung_graph
    with pytest.raises(ExportError, match=r"Dice .* < 1.01.*profile cpu"):
        quantize_onnx(src, tmp_path / "q.onnx", _inputs(record, 300), _inputs(record, 400), min_dice=1.01)


def test_int8_needs_foreground_to_check(lung_graph: tuple[Path, LungRecord], tmp_path: Path) -> None:
    src, record = lung_graph
    air = P.lung_input(np.full((4, 128, 128), -1000, np.int16), record)
    with pytest.raises(ExportError, match="no foreground in the 4 check inputs"):
        quantize_onnx(src, tmp_path / "q.onnx", _inputs(record, 300), air)
    with pytest.raises(ExportError, match="calibration and check inputs"):
        quantize_onnx(src, tmp_path / "q.onnx", air[:0], air)


def test_head_nodes_are_after_the_last_conv(lung_graph: tuple[Path, LungRecord], tmp_path: Path) -> None:
    src, _ = lung_graph
    graph = onnx.load(str(src)).graph
    ops = [n.op_type for n in graph.node if n.name in set(head_nodes(src))]
    assert "Conv" not in ops and {"Sub", "Exp", "Reciprocal"} <= set(ops)
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    relu = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"], name="r")], "g", [x], [y])
    onnx.save(onnx.helper.make_model(relu), str(tmp_path / "relu.onnx"))
    with pytest.raises(ExportError, match="no Conv node"):
        head_nodes(tmp_path / "relu.onnx")
