"""DeepLabV3+ with a DenseNet-121 encoder for lesion segmentation (CoviDet DL#4).

Output stride 16 *without dilation*: the encoder stops down-sampling after the third transition
(its average pooling is dropped), so dense block 4 runs at stride 16 with ordinary convolutions.
Low-level features for the decoder come from dense block 1 (stride 4).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from covidet.models._registry import register_model

__all__ = ["DeepLabV3PlusDenseNet"]


def _cbr(cin: int, cout: int, k: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = 0 if k == 1 else dilation
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int, bn_size: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(F.relu(self.norm1(x)))
        y = self.conv2(F.relu(self.norm2(y)))
        return torch.cat([x, y], dim=1)


class Transition(nn.Sequential):
    def __init__(self, cin: int, cout: int, pool: bool) -> None:
        super().__init__(nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, cout, 1, bias=False))
        if pool:
            self.append(nn.AvgPool2d(2, stride=2))


class DenseNetEncoder(nn.Module):
    def __init__(self, blocks: Sequence[int], growth: int, init: int, in_ch: int = 1) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_ch, init, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(init),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        c = init
        self.blocks = nn.ModuleList()
        self.transitions = nn.ModuleList()
        for i, n in enumerate(blocks):
            layers = []
            for _ in range(n):
                layers.append(DenseLayer(c, growth))
                c += growth
            self.blocks.append(nn.Sequential(*layers))
            if i < len(blocks) - 1:
                # strides 4 -> 8 -> 16, then no pooling: output stride 16 without dilation
                self.transitions.append(Transition(c, c // 2, pool=i < 2))
                c //= 2
        self.norm = nn.BatchNorm2d(c)
        self.low_channels = init + blocks[0] * growth
        self.out_channels = c

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.stem(x)
        low = x
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == 0:
                low = x
            if i < len(self.transitions):
                x = self.transitions[i](x)
        return low, F.relu(self.norm(x))


class ASPP(nn.Module):
    def __init__(self, cin: int, cout: int, rates: Sequence[int] = (6, 12, 18)) -> None:
        super().__init__()
        self.branches = nn.ModuleList([_cbr(cin, cout)] + [_cbr(cin, cout, 3, r) for r in rates])
        self.pool = _cbr(cin, cout)
        self.project = nn.Sequential(_cbr(cout * (len(rates) + 2), cout), nn.Dropout(0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(x.mean(dim=(2, 3), keepdim=True)).expand(-1, -1, x.shape[2], x.shape[3])
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class DeepLabV3PlusDenseNet(nn.Module):
    """[B,1,H,W] (H, W divisible by 16) -> lesion logits [B,1,H,W]."""

    def __init__(
        self, blocks: Sequence[int], growth: int, init: int, aspp: int, low: int, n_classes: int = 1
    ) -> None:
        super().__init__()
        self.encoder = DenseNetEncoder(blocks, growth, init)
        self.aspp = ASPP(self.encoder.out_channels, aspp)
        self.low_proj = _cbr(self.encoder.low_channels, low)
        self.decoder = nn.Sequential(_cbr(aspp + low, aspp, 3), _cbr(aspp, aspp, 3))
        self.classifier = nn.Conv2d(aspp, n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low, high = self.encoder(x)
        y = self.aspp(high)
        y = F.interpolate(y, size=low.shape[-2:], mode="bilinear", align_corners=False)
        y = self.decoder(torch.cat([y, self.low_proj(low)], dim=1))
        y = self.classifier(y)
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


@register_model("deeplabv3plus_densenet121")
def deeplabv3plus_densenet121(variant: str) -> DeepLabV3PlusDenseNet:
    if variant == "full":
        return DeepLabV3PlusDenseNet((6, 12, 24, 16), growth=32, init=64, aspp=256, low=48)
    return DeepLabV3PlusDenseNet((2, 2, 2, 2), growth=8, init=16, aspp=32, low=8)
