"""The network as it is served: weight standardization folded into plain convolutions, plus the
serving head (what ONNX, TensorRT and the torch runtime all run)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from covidet.models._explain import class_maps_from_features
from covidet.models._layers import WSConv2d, standardize_weight

__all__ = ["fold_weight_standardization", "serving_module"]


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

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.head == "softmax_cam":  # the classifier's forward, keeping layer4's maps for CAM
            net: Any = self.model  # a covidet ResNet (feature_maps, avgpool, fc)
            maps = net.feature_maps(x)
            y = net.fc(torch.flatten(net.avgpool(maps), 1))
            return torch.softmax(y, dim=1), class_maps_from_features(maps, net.fc.weight)
        y = self.model(x)
        if self.head == "lung":  # P(lung) = 1 - P(background): 3 classes merged to binary
            # = 1 - 1 / (1 + sum_c exp(y_c - y_0)), written out element-wise: ONNX Runtime's
            # Softmax over the channel axis of NCHW transposes the whole map (a measurable share of
            # the demo U-Net's time), and only P(background) is wanted. The same value as the
            # softmax to float rounding.
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
    # (probabilities, class activation maps): see covidet.models._explain
    "resnet152_cls": "softmax_cam",
    "resnext50_ws_gn": "identity",
    "gru_fusion": "identity",  # the GRU head already ends in a sigmoid
    "deeplabv3plus_densenet121": "sigmoid",
}


def serving_module(model: nn.Module, architecture: str) -> nn.Module:
    """The network plus its serving head (what ONNX, TensorRT and the torch runtime all run).

    One tensor, except for ``resnet152_cls``: a tuple (class probabilities [N, n_classes],
    class activation maps [N, n_classes, h, w] on layer4's grid, as `class_activation_maps`).
    """
    if architecture not in _HEADS:
        raise KeyError(f"no serving head for {architecture!r}; valid: {', '.join(_HEADS)}")
    return _Serving(model, _HEADS[architecture]).eval()
