"""Registry, architectures (papers' topology), weight standardization."""

from __future__ import annotations

import pytest
import torch

from covidet.models import WS_CONVENTIONS, WSConv2d, build_model, list_models, standardize_weight

NAMES = ["deeplabv3plus_densenet121", "gru_fusion", "lung_unet", "resnet152_cls", "resnext50_ws_gn"]


def test_registry_lists_every_architecture() -> None:
    assert list_models() == NAMES


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(KeyError, match="valid names: deeplabv3plus_densenet121, gru_fusion"):
        build_model("resnet50")
    with pytest.raises(KeyError, match="valid variants"):
        build_model("lung_unet", "tiny")


@pytest.mark.parametrize(
    ("name", "shape", "out"),
    [
        ("lung_unet", (2, 1, 64, 64), (2, 3, 64, 64)),
        ("resnet152_cls", (2, 3, 64, 64), (2, 4)),
        ("resnext50_ws_gn", (2, 3, 64, 64), (2, 256)),
        ("gru_fusion", (2, 5, 256), (2, 2)),
        ("deeplabv3plus_densenet121", (2, 1, 64, 64), (2, 1, 64, 64)),
    ],
)
def test_demo_shapes(name: str, shape: tuple[int, ...], out: tuple[int, ...]) -> None:
    model = build_model(name, "demo").eval()
    with torch.no_grad():
        assert tuple(model(torch.rand(*shape)).shape) == out


def test_full_variants_have_the_papers_sizes() -> None:
    params = {n: sum(p.numel() for p in build_model(n, "full").parameters()) for n in NAMES}
    assert 57e6 < params["resnet152_cls"] < 60e6  # ResNet-152 (4 classes)
    assert 22e6 < params["resnext50_ws_gn"] < 24e6  # ResNeXt-50 32x4d without fc
    assert 13e6 < params["lung_unet"] < 14e6
    unet = build_model("lung_unet", "full")
    assert (
        unet.inc.double_conv[0].out_channels == 64
        and unet.down4.maxpool_conv[1].double_conv[0].out_channels == 512
    )
    assert unet.up1.up.align_corners and unet.outpred.out_channels == 3
    rx = build_model("resnext50_ws_gn", "full")
    assert rx.layer1[0].conv2.groups == 32 and rx.layer1[0].conv2.out_channels == 128
    assert isinstance(rx.layer1[0].conv2, WSConv2d)
    assert isinstance(rx.layer1[0].bn2, torch.nn.GroupNorm)


def test_deeplab_output_stride_16_without_dilation() -> None:
    model = build_model("deeplabv3plus_densenet121", "demo").eval()
    low, high = model.encoder(torch.rand(1, 1, 128, 128))
    assert low.shape[-1] == 128 // 4 and high.shape[-1] == 128 // 16
    encoder_convs = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.dilation == (1, 1) for c in encoder_convs)


def test_ws_conventions_differ_and_standardize() -> None:
    w = torch.randn(8, 4, 3, 3)
    a = standardize_weight(w, WS_CONVENTIONS[0])
    b = standardize_weight(w, WS_CONVENTIONS[1])
    assert torch.allclose(a.mean(dim=(1, 2, 3)), torch.zeros(8), atol=1e-5)
    assert torch.allclose(a.var(dim=(1, 2, 3), unbiased=False), torch.ones(8), atol=1e-3)
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="convention"):
        standardize_weight(w, "other")
