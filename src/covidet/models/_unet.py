"""Lung 2D U-Net in the Jin et al. layout (widths 64-128-256-512-512, bilinear up, BN, `outpred`)."""

from __future__ import annotations

import torch
from torch import nn

from covidet.models._registry import register_model

__all__ = ["LungUNet"]


class DoubleConv(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.double_conv = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


class Down(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(cin, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(x)


class Up(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.conv = DoubleConv(cin, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class LungUNet(nn.Module):
    """Input [B,1,H,W] (H, W divisible by 16) -> logits [B,3,H,W] (background + 2 lung classes)."""

    def __init__(self, widths: tuple[int, int, int, int, int], n_classes: int = 3) -> None:
        super().__init__()
        w0, w1, w2, w3, w4 = widths
        self.inc = DoubleConv(1, w0)
        self.down1, self.down2 = Down(w0, w1), Down(w1, w2)
        self.down3, self.down4 = Down(w2, w3), Down(w3, w4)
        self.up1 = Up(w3 + w4, w2)
        self.up2 = Up(w2 + w2, w1)
        self.up3 = Up(w1 + w1, w0)
        self.up4 = Up(w0 + w0, w0)
        self.outpred = nn.Conv2d(w0, n_classes, 1)
        self.n_classes = n_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        y = self.up1(x5, x4)
        y = self.up2(y, x3)
        y = self.up3(y, x2)
        y = self.up4(y, x1)
        return self.outpred(y)


@register_model("lung_unet")
def lung_unet(variant: str) -> LungUNet:
    widths = (64, 128, 256, 512, 512) if variant == "full" else (8, 16, 32, 64, 64)
    return LungUNet(widths)
