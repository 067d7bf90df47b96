"""int8 quantization of the segmentation graphs: checked against the float graph on masks; the
slice classifier's class maps survive it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from covidet import _contract as C
from covidet import ensemble as P
from covidet.export import ONNX_CLASS_MAPS, ONNX_INPUT, ONNX_OUTPUT, ExportError, export_onnx, quantize_onnx
from covidet.export._quantize import head_nodes
from covidet.export._render import default_checkpoints
from covidet.models import load_checkpoint
from covidet.phantom import make_phantom
from covidet.preprocessing import LungRecord, SliceRecord, as_kind

#: int8 class maps may differ from the float ones by this share of each slice's float map range
#: (max - min over classes and cells): the features feeding them are quantized, the MatMul is not.
CLASS_MAPS_RTOL = 0.1


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


def _classifier_inputs(record: SliceRecord, seed: int) -> np.ndarray:
    xs = []
    for i, kind in enumerate(C.CLASS_NAMES):
        ph = make_phantom(kind, n_slices=6, size=128, seed=seed + i)
        sel = P.select_slices(ph.lung_mask, record)
        xs.append(P.classifier_input(ph.hu, ph.lung_mask[sel.indices], sel, record))
    return np.concatenate(xs)


def test_int8_classifier_keeps_its_class_maps(tmp_path: Path) -> None:
    """The classifier is served in float by every profile; quantizing its two-output graph still
    works, the class-map branch stays float and its maps stay close to the float graph's."""
    import onnxruntime as ort

    model, meta = load_checkpoint(default_checkpoints() / C.SLICE_CLASSIFIER.name)
    record = as_kind(meta.preprocessing, SliceRecord)
    src = tmp_path / "cls.onnx"
    export_onnx(model, meta, src)
    check = _classifier_inputs(record, 400)
    quantize_onnx(src, tmp_path / "q.onnx", _classifier_inputs(record, 300), check)
    graph = onnx.load(str(tmp_path / "q.onnx")).graph
    producer = {o: n.name for n in graph.node for o in n.output}
    assert [o.name for o in graph.output] == [ONNX_OUTPUT, ONNX_CLASS_MAPS]
    assert "QuantizeLinear" in {n.op_type for n in graph.node}
    head = set(head_nodes(src))
    assert {n.op_type for n in graph.node if n.name in head} >= {"MatMul", "Softmax"}
    assert not [
        n.name for n in graph.node if n.op_type == "QuantizeLinear" and producer.get(n.input[0]) in head
    ]

    def run(path: Path) -> list[np.ndarray]:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return sess.run(None, {ONNX_INPUT: check})

    (p, maps), (qp, qmaps) = run(src), run(tmp_path / "q.onnx")
    assert qmaps.shape == maps.shape == (len(check), 4, 7, 7)
    assert np.array_equal(qp.argmax(1), p.argmax(1))
    flat = maps.reshape(len(maps), -1)
    err = np.abs(qmaps - maps).reshape(len(maps), -1).max(axis=1)
    assert (err <= CLASS_MAPS_RTOL * (flat.max(axis=1) - flat.min(axis=1))).all()
