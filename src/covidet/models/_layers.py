"""Shared layers: weight-standardized convolution and GroupNorm helpers."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["WS_CONVENTIONS", "WSConv2d", "group_norm", "standardize_weight"]

#: biased_var_eps_in_sqrt: (w - mean) / sqrt(var_biased + eps)   (Qiao et al., timm's StdConv2d)
#: unbiased_std_plus_eps: (w - mean) / (std_unbiased + eps)      (the original WS reference code)
WS_CONVENTIONS = ("biased_var_eps_in_sqrt", "unbiased_std_plus_eps")


def standardize_weight(w: torch.Tensor, convention: str, eps: float = 1e-5) -> torch.Tensor:
    """Standardize conv weights per output channel under the given convention."""
    dims = list(range(1, w.ndim))
    mean = w.mean(dim=dims, keepdim=True)
    if convention == "biased_var_eps_in_sqrt":
        var = w.var(dim=dims, keepdim=True, unbiased=False)
        return (w - mean) / torch.sqrt(var + eps)
    if convention == "unbiased_std_plus_eps":
        std = w.std(dim=dims, keepdim=True, unbiased=True)
        return (w - mean) / (std + eps)
    raise ValueError(f"unknown weight-standardization convention {convention!r}; use {WS_CONVENTIONS}")


class WSConv2d(nn.Conv2d):
    """Conv2d with weight standardization (fold into a plain Conv2d before export)."""

    def __init__(self, *args: object, ws_convention: str = WS_CONVENTIONS[0], **kwargs: object):
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        if ws_convention not in WS_CONVENTIONS:
            raise ValueError(f"unknown ws_convention {ws_convention!r}; use {WS_CONVENTIONS}")
        self.ws_convention = ws_convention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = standardize_weight(self.weight, self.ws_convention)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= ``groups`` that divides ``channels``."""
    return nn.GroupNorm(math.gcd(groups, channels), channels)
