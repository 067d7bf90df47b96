"""The slice models' Triton adapter, `SliceModel`, against a stand-in for Triton's pb_utils."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import pytest

from covidet import _contract as C
from covidet.ensemble import SliceModel

_DTYPES = {"TYPE_FP32": np.float32, "TYPE_FP16": np.float16}


class _Tensor:
    def __init__(self, name: str, array: Any) -> None:
        self.name, self.array = name, array

    def as_numpy(self) -> np.ndarray:
        return np.asarray(self.array)

    def to_dlpack(self) -> Any:
        import torch
        from torch.utils.dlpack import to_dlpack

        return to_dlpack(torch.from_numpy(np.asarray(self.array)))

    @classmethod
    def from_dlpack(cls, name: str, capsule: Any) -> _Tensor:
        from torch.utils.dlpack import from_dlpack

        return cls(name, from_dlpack(capsule).numpy())


class _Request(dict):
    """A request: its input tensors by name, and the outputs it asks for (Triton lists every
    output of the model when a request names none)."""

    def __init__(self, tensors: dict[str, _Tensor], outputs: tuple[str, ...] = ("OUT",)) -> None:
        super().__init__(tensors)
        self.outputs = outputs

    def requested_output_names(self) -> list[str]:
        return list(self.outputs)


class _Response:
    def __init__(self, output_tensors: list[_Tensor] | None = None, error: Any = None) -> None:
        self.output_tensors, self.error = output_tensors or [], error


class _Logger:
    lines: ClassVar[list[str]] = []

    @classmethod
    def log_info(cls, msg: str) -> None:
        cls.lines.append(msg)

    log_error = log_info


def _pb() -> SimpleNamespace:
    return SimpleNamespace(
        Tensor=_Tensor,
        InferenceResponse=_Response,
        TritonError=lambda msg: SimpleNamespace(message=msg),
        get_input_tensor_by_name=lambda request, name: request[name],
        triton_string_to_numpy=_DTYPES.__getitem__,
        Logger=_Logger,
    )


def _args(
    version_dir: Path,
    params: dict[str, str],
    output: str = "OUT",
    dtype: str = "TYPE_FP32",
    more_outputs: tuple[str, ...] = (),
) -> dict:
    config = {
        "input": [{"name": "IMAGE", "data_type": "TYPE_FP32"}],
        "output": [{"name": name, "data_type": dtype} for name in (output, *more_outputs)],
        "parameters": {k: {"string_value": v} for k, v in params.items()},
    }
    return {
        "model_config": json.dumps(config),
        "model_name": "double",
        "model_repository": str(version_dir.parent),
        "model_version": version_dir.name,
    }


@pytest.fixture
def doubling_onnx(tmp_path: Path) -> Path:
    """A version folder whose model.onnx doubles its [N, 1, 4, 4] input."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1, 4, 4])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    graph = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["y"])], "double", [x], [y], [two])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    vdir = tmp_path / "double" / "1"
    vdir.mkdir(parents=True)
    onnx.save(model, str(vdir / "model.onnx"))
    return vdir


def _requests(*sizes: int, outputs: tuple[str, ...] = ("OUT",)) -> list[_Request]:
    rng = np.random.default_rng(0)
    return [
        _Request({"IMAGE": _Tensor("IMAGE", rng.random((n, 1, 4, 4), dtype=np.float32))}, outputs)
        for n in sizes
    ]


@pytest.fixture
def two_output_onnx(tmp_path: Path) -> Path:
    """A version folder whose model.onnx gives its [N, 1, 4, 4] input doubled, then tripled."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 4, 4])
    ys = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n", 1, 4, 4]) for n in ("y", "z")]
    consts = [helper.make_tensor(n, TensorProto.FLOAT, [], [v]) for n, v in (("two", 2.0), ("three", 3.0))]
    nodes = [helper.make_node("Mul", ["x", "two"], ["y"]), helper.make_node("Mul", ["x", "three"], ["z"])]
    model = helper.make_model(
        helper.make_graph(nodes, "two", [x], ys, consts), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    vdir = tmp_path / "two" / "1"
    vdir.mkdir(parents=True)
    onnx.save(model, str(vdir / "model.onnx"))
    return vdir


def test_each_request_gets_the_outputs_it_asked_for(two_output_onnx: Path) -> None:
    model = SliceModel(_pb())
    params = {"runtime": "onnxruntime", "intra_op_threads": "1"}
    model.initialize(_args(two_output_onnx, params, output="OUT", more_outputs=("MAPS",)))
    first = _requests(2, outputs=("OUT",))
    both = _requests(3, outputs=("OUT", "MAPS"))
    maps = _requests(1, outputs=("MAPS",))
    responses = model.execute([*first, *both, *maps])
    assert [[t.name for t in r.output_tensors] for r in responses] == [["OUT"], ["OUT", "MAPS"], ["MAPS"]]
    for request, response in zip([*first, *both, *maps], responses, strict=True):
        x = request["IMAGE"].array
        for tensor in response.output_tensors:
            np.testing.assert_allclose(tensor.array, (2 if tensor.name == "OUT" else 3) * x, rtol=1e-6)
    # only the first output asked for: one output computed, as with a one-output model
    (out,) = model.execute(_requests(2))[0].output_tensors
    assert out.name == "OUT"


def test_requests_of_several_scans_run_as_one_batch_and_split_back(doubling_onnx: Path) -> None:
    model = SliceModel(_pb())
    model.initialize(
        _args(doubling_onnx, {"runtime": "onnxruntime", "intra_op_threads": "1"}, dtype="TYPE_FP16")
    )
    assert not model.dlpack
    requests = _requests(3, 1, 2)
    responses = model.execute(requests)
    assert len(responses) == 3 and all(r.error is None for r in responses)
    for request, response in zip(requests, responses, strict=True):
        (out,) = response.output_tensors
        assert out.name == "OUT" and out.array.dtype == np.float16  # the config's output dtype
        np.testing.assert_allclose(out.array, 2 * request["IMAGE"].array, rtol=1e-3)
    model.finalize()
    assert model.runner is None


def test_a_failing_batch_fails_its_requests_and_the_model_keeps_serving(doubling_onnx: Path) -> None:
    model = SliceModel(_pb())
    model.initialize(_args(doubling_onnx, {"runtime": "onnxruntime", "intra_op_threads": "1"}))
    bad = [_Request({"IMAGE": _Tensor("IMAGE", np.zeros((2, 3, 4, 4), np.float32))})] * 2  # wrong channels
    responses = model.execute(bad)
    assert [r.output_tensors for r in responses] == [[], []]
    assert all(r.error.message.startswith("double failed: ") for r in responses)
    assert any("batch of 2 requests failed" in line for line in _Logger.lines)
    assert all(r.error is None for r in model.execute(_requests(2)))


def test_torch_runtime_hands_tensors_over_by_dlpack(tmp_path: Path) -> None:
    from covidet.export._render import default_checkpoints

    stem = default_checkpoints() / C.LUNG_SEG.name
    params = {"runtime": "torch", "checkpoint": str(stem), "device": "cpu", "compile": "none"}
    model = SliceModel(_pb())
    name = C.LUNG_SEG.outputs[0].name
    model.initialize(_args(tmp_path, params, output=name))
    assert model.dlpack
    rng = np.random.default_rng(1)
    requests = [
        _Request({"IMAGE": _Tensor("IMAGE", rng.random((n, 1, 128, 128), dtype=np.float32))}, (name,))
        for n in (2, 1)
    ]
    responses = model.execute(requests)
    want = model.runner(np.concatenate([r["IMAGE"].array for r in requests]))
    got = np.concatenate([r.output_tensors[0].array for r in responses])
    assert [r.output_tensors[0].array.shape[0] for r in responses] == [2, 1]
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_triton_builds_the_subclass_that_names_pb_utils() -> None:
    with pytest.raises(TypeError, match="pb_utils"):
        SliceModel()

    class TritonPythonModel(SliceModel):
        pb = _pb()

    assert TritonPythonModel().pb is TritonPythonModel.pb
