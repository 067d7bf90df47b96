"""ONNX export of every architecture, verified against PyTorch; WS folding; TensorRT message."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from covidet.export import (
    ExportError,
    build_tensorrt_engine,
    export_onnx,
    tensorrt_available,
)
from covidet.models import CheckpointMeta, build_model, fold_weight_standardization
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
