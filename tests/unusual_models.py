"""Models that stray from what the passes expect, as users bring them (factories for task files: `unusual_models:X`)."""

from __future__ import annotations

import torch
from torch import nn


class BranchyMLP(nn.Module):
    """Picks a head by a Python `if` on the input's values: torch.export, and so export.onnx, cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, 64), nn.ReLU())
        self.bright, self.dim = nn.Linear(64, 10), nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.body(x)
        if x.mean() > 0.5:
            return self.bright(hidden)
        return self.dim(hidden)


class DigitsGRU(nn.Module):
    """Reads an 8x8 digit as 8 steps of 8 pixels; inputs (N, 8, 8)."""

    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(8, 32, batch_first=True)
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps, _ = self.gru(x)
        return self.head(steps[:, -1])
