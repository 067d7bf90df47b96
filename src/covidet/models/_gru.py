"""CoviDet GRU fusion head: slice features of one scan -> DL#1 and DL#2 probabilities."""

from __future__ import annotations

import torch
from torch import nn

from covidet.models._registry import register_model

__all__ = ["GRUFusion"]


class GRUFusion(nn.Module):
    """[B, S, F] slice features in slice order -> [B, 2] sigmoid probabilities (DL#1, DL#2)."""

    def __init__(self, feature_dim: int, hidden: int) -> None:
        super().__init__()
        self.gru = nn.GRU(feature_dim, hidden, num_layers=1, batch_first=True)
        self.head_viral = nn.Linear(hidden, 1)
        self.head_covid = nn.Linear(hidden, 1)
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.gru(x)
        last = h[-1]
        return torch.sigmoid(torch.cat([self.head_viral(last), self.head_covid(last)], dim=1))


@register_model("gru_fusion")
def gru_fusion(variant: str, feature_dim: int | None = None) -> GRUFusion:
    if variant == "full":
        return GRUFusion(feature_dim or 2048, 256)
    return GRUFusion(feature_dim or 256, 32)
