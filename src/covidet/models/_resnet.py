"""ResNet-152 4-class slice classifier (Jin et al.) and ResNeXt-50 32x4d + WS + GN (CoviDet)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from covidet.models._layers import WS_CONVENTIONS, WSConv2d, group_norm
from covidet.models._registry import register_model

__all__ = ["ResNeXtWSGN", "ResNet"]

Norm = Callable[[int], nn.Module]
Conv = Callable[..., nn.Conv2d]


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(
        self, cin: int, planes: int, stride: int, *, groups: int, width: int, conv: Conv, norm: Norm
    ) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = conv(cin, width, 1, bias=False)
        self.bn1 = norm(width)
        self.conv2 = conv(width, width, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn2 = norm(width)
        self.conv3 = conv(width, out, 1, bias=False)
        self.bn3 = norm(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != out:
            self.downsample = nn.Sequential(conv(cin, out, 1, stride=stride, bias=False), norm(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + idt)


class _ResNetBase(nn.Module):
    def __init__(
        self,
        layers: Sequence[int],
        base: int,
        *,
        groups: int,
        width_per_group: int,
        conv: Conv,
        norm: Norm,
    ) -> None:
        super().__init__()
        self.conv1 = conv(3, base, 7, stride=2, padding=3, bias=False)
        self.bn1 = norm(base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = base
        stages = []
        for i, n in enumerate(layers):
            planes = base * 2**i
            width = planes * width_per_group * groups // 64
            blocks = []
            for j in range(n):
                stride = 2 if (j == 0 and i > 0) else 1
                blocks.append(
                    Bottleneck(cin, planes, stride, groups=groups, width=width, conv=conv, norm=norm)
                )
                cin = planes * Bottleneck.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = cin

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        """The last convolutional feature maps (layer4's output, before the pooling): [B,F,h,w]."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.avgpool(self.feature_maps(x)), 1)


class ResNet(_ResNetBase):
    """ResNet with BatchNorm and a linear head ``fc``: [B,3,H,W] -> logits [B,n_classes]."""

    def __init__(self, layers: Sequence[int], base: int = 64, n_classes: int = 4) -> None:
        super().__init__(layers, base, groups=1, width_per_group=64, conv=nn.Conv2d, norm=nn.BatchNorm2d)
        self.fc = nn.Linear(self.feature_dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class ResNeXtWSGN(_ResNetBase):
    """ResNeXt with weight-standardized convs + GroupNorm: [B,3,H,W] -> features [B,F]."""

    def __init__(
        self,
        layers: Sequence[int],
        base: int,
        *,
        groups: int,
        width_per_group: int,
        gn_groups: int = 32,
        ws_convention: str = WS_CONVENTIONS[0],
    ) -> None:
        def conv(*args: object, **kwargs: object) -> nn.Conv2d:
            return WSConv2d(*args, ws_convention=ws_convention, **kwargs)

        super().__init__(
            layers,
            base,
            groups=groups,
            width_per_group=width_per_group,
            conv=conv,
            norm=lambda c: group_norm(c, gn_groups),
        )
        self.ws_convention = ws_convention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


@register_model("resnet152_cls")
def resnet152_cls(variant: str, n_classes: int = 4) -> ResNet:
    if variant == "full":
        return ResNet([3, 8, 36, 3], 64, n_classes)
    return ResNet([1, 1, 2, 1], 8, n_classes)


@register_model("resnext50_ws_gn")
def resnext50_ws_gn(variant: str, ws_convention: str = WS_CONVENTIONS[0]) -> ResNeXtWSGN:
    if variant == "full":  # 32x4d
        return ResNeXtWSGN(
            [3, 4, 6, 3], 64, groups=32, width_per_group=4, gn_groups=32, ws_convention=ws_convention
        )
    return ResNeXtWSGN(
        [1, 1, 1, 1], 8, groups=4, width_per_group=16, gn_groups=8, ws_convention=ws_convention
    )
