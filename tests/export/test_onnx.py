"""ONNX export of every architecture, verified against PyTorch; WS folding; TensorRT message."""

from __future__ import annotations

import os
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from covidet import _contract as C
from covidet.export import (
    ONNX_CLASS_MAPS,
    ONNX_INPUT,
    ONNX_OUTPUT,
    ExportError,
    build_tensorrt_engine,
    example_input,
    export_onnx,
    onnx_outputs,
    tensorrt_available,
    verify_onnx,
)
from covidet.export._render import default_checkpoints
from covidet.models import (
    CheckpointMeta,
    build_model,
    class_activation_maps,
    fold_weight_standardization,
    list_models,
    load_checkpoint,
    serving_module,
)
from covidet.models._serving import _Serving
from covidet.preprocessing import default_records

RECS = default_records()
CASES = [
    ("lung_unet", replace(RECS["lung_seg"], input_size=(64, 64)), {}),
    ("resnet152_cls", replace(RECS["slice_classifier"], input_size=(64, 64)), {}),
    ("resnext50_ws_gn", replace(RECS["slice_encoder"], input_size=(64, 64)), {"feature_dim": 256}),
    ("gru_fusion", RECS["gru_fusion"], {"feature_dim": 256}),
    ("deeplabv3plus_densenet121", replace(RECS["lesion_seg"], input_size=(64, 64)), {}),
]


def _meta(arch: str, rec: dict, extra: dict, variant: str = "demo") -> CheckpointMeta:
    return CheckpointMeta(arch, variant, "1", rec, [], None, "test", False, "", extra)


@pytest.mark.parametrize(("arch", "rec", "extra"), CASES)
def test_demo_export_matches_pytorch(tmp_path: Path, arch: str, rec: dict, extra: dict) -> None:
    torch.manual_seed(0)
    model = build_model(arch, "demo").eval()
    report = export_onnx(model, _meta(arch, rec, extra), tmp_path / "m.onnx")
    assert report.max_abs_error < 1e-4
    assert len(report.checked_shapes) == 2 and report.checked_shapes[0][0] != report.checked_shapes[1][0]


@pytest.mark.parametrize("arch", ["lung_unet", "gru_fusion"])
def test_full_export_matches_pytorch(tmp_path: Path, arch: str) -> None:
    rec = replace(RECS["lung_seg"], input_size=(32, 32)) if arch == "lung_unet" else RECS["gru_fusion"]
    extra = {"feature_dim": 2048} if arch == "gru_fusion" else {}
    model = build_model(arch, "full").eval()
    report = export_onnx(model, _meta(arch, rec, extra, "full"), tmp_path / "m.onnx")
    assert report.max_abs_error < 1e-4


@pytest.mark.skipif(os.environ.get("COVIDET_SLOW") != "1", reason="set COVIDET_SLOW=1 (minutes)")
@pytest.mark.parametrize(("arch", "rec", "extra"), CASES)
def test_full_size_export_matches_pytorch(tmp_path: Path, arch: str, rec: dict, extra: dict) -> None:
    extra = {"feature_dim": 2048} if "feature_dim" in extra else {}
    model = build_model(arch, "full").eval()
    assert export_onnx(model, _meta(arch, rec, extra, "full"), tmp_path / "m.onnx").max_abs_error < 1e-3


def test_export_fails_loudly_above_tolerance(tmp_path: Path) -> None:
    model = build_model("gru_fusion", "demo").eval()
    with pytest.raises(ExportError, match="differs from PyTorch"):
        export_onnx(
            model,
            _meta("gru_fusion", RECS["gru_fusion"], {"feature_dim": 256}),
            tmp_path / "m.onnx",
            atol=-1.0,
        )


@pytest.mark.parametrize("convention", ["biased_var_eps_in_sqrt", "unbiased_std_plus_eps"])
def test_fold_weight_standardization(convention: str) -> None:
    torch.manual_seed(0)
    model = build_model("resnext50_ws_gn", "demo", ws_convention=convention).eval()
    folded = fold_weight_standardization(model)
    assert not any(type(m).__name__ == "WSConv2d" for m in folded.modules())
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=1e-4)


@pytest.mark.skipif(tensorrt_available() is None, reason="TensorRT and a GPU are present")
def test_tensorrt_without_gpu_gives_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="TensorRT is not available here"):
        build_tensorrt_engine(tmp_path / "m.onnx", tmp_path / "m.plan", input_hw=(64, 64))
    assert not (tmp_path / "m.plan").exists()


def test_lung_head_is_one_minus_background_softmax() -> None:
    """The lung head's element-wise form equals 1 - softmax(logits)[background], extremes included."""
    from covidet.models import serving_module

    class Logits(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    g = torch.Generator().manual_seed(0)
    y = torch.randn(4, 3, 8, 8, generator=g) * 6
    y[0, 0], y[1, 1:] = 200.0, 200.0  # certain background / certain lung: no inf or nan
    got = serving_module(Logits(), "lung_unet")(y)
    want = 1.0 - torch.softmax(y, dim=1)[:, 0:1]
    assert got.shape == (4, 1, 8, 8) and torch.isfinite(got).all()
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    assert float(got[0].max()) < 1e-6 and float(got[1].min()) == 1.0


def test_only_the_classifier_has_class_maps() -> None:
    outputs = {arch: onnx_outputs(arch) for arch in list_models()}
    assert outputs.pop("resnet152_cls") == (ONNX_OUTPUT, ONNX_CLASS_MAPS) == ("output", "class_maps")
    assert set(outputs.values()) == {(ONNX_OUTPUT,)}


def test_classifier_graph_has_probabilities_then_class_maps(tmp_path: Path) -> None:
    import onnxruntime as ort

    torch.manual_seed(0)
    arch, rec, extra = CASES[1]
    model = build_model(arch, "demo").eval()
    export_onnx(model, _meta(arch, rec, extra), tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert [(o.name, o.shape) for o in sess.get_outputs()] == [
        (ONNX_OUTPUT, ["slices", 4]),
        (ONNX_CLASS_MAPS, ["slices", 4, 2, 2]),
    ]
    x = torch.rand(3, 3, 64, 64)
    probs, maps = sess.run(None, {ONNX_INPUT: x.numpy()})
    np.testing.assert_allclose(maps, class_activation_maps(model, x).numpy(), atol=1e-5, rtol=0)
    # without the class maps: the same probabilities, bit for bit, also when ONNX Runtime runs only
    # the nodes the requested output needs
    assert np.array_equal(sess.run([ONNX_OUTPUT], {ONNX_INPUT: x.numpy()})[0], probs)
    only = ort.RunOptions()
    only.only_execute_path_to_fetches = True
    assert np.array_equal(sess.run([ONNX_OUTPUT], {ONNX_INPUT: x.numpy()}, only)[0], probs)


def test_verify_checks_the_class_maps(tmp_path: Path) -> None:
    torch.manual_seed(0)
    arch, rec, extra = CASES[1]
    model = build_model(arch, "demo").eval()
    export_onnx(model, _meta(arch, rec, extra), tmp_path / "m.onnx")
    module = serving_module(model, arch)

    class Shifted(torch.nn.Module):  # right probabilities, wrong maps
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            probs, maps = module(x)
            return probs, maps + 1e-2

    x = [torch.rand(2, 3, 64, 64)]
    verify_onnx(module, tmp_path / "m.onnx", x, atol=1e-4, rtol=1e-3)
    with pytest.raises(ExportError, match="differs from PyTorch in 'class_maps'"):
        verify_onnx(Shifted(), tmp_path / "m.onnx", x, atol=1e-4, rtol=1e-3)
    with pytest.raises(ExportError, match="PyTorch gives 1"):
        verify_onnx(_Serving(model, "softmax").eval(), tmp_path / "m.onnx", x, atol=1e-4, rtol=1e-3)


def test_demo_classifier_probabilities_are_bit_identical_to_the_one_output_graph(tmp_path: Path) -> None:
    """What the classifier's graph served before the class maps (its softmax head alone) and the
    two-output graph give the same probabilities in ONNX Runtime, bit for bit."""
    import onnxruntime as ort

    model, meta = load_checkpoint(default_checkpoints() / C.SLICE_CLASSIFIER.name)
    report = export_onnx(model, meta, tmp_path / "new.onnx")
    assert report.max_abs_error < 1e-5
    before = _Serving(fold_weight_standardization(model).eval(), "softmax").eval()
    axes = {ONNX_INPUT: {0: "slices"}, ONNX_OUTPUT: {0: "slices"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            before,
            (example_input(meta, 2),),
            str(tmp_path / "old.onnx"),
            input_names=[ONNX_INPUT],
            output_names=[ONNX_OUTPUT],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    x = {ONNX_INPUT: example_input(meta, 6).numpy()}
    old = ort.InferenceSession(str(tmp_path / "old.onnx"), providers=["CPUExecutionProvider"])
    new = ort.InferenceSession(str(tmp_path / "new.onnx"), providers=["CPUExecutionProvider"])
    want = old.run([ONNX_OUTPUT], x)[0]
    assert np.array_equal(new.run([ONNX_OUTPUT], x)[0], want)
    assert np.array_equal(new.run(None, x)[0], want)
