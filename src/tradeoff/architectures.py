"""Models described by a few numbers: MLPs, 1-D and 2-D CNNs and GRUs, for `model.factory` with `model.options`
(`factory: "tradeoff.architectures:CNN"`, `options: {input_shape: [1, 40], classes: 10, channels: [32, 32],
norm: batch}`).

What a tuner or an architecture search varies (depth, width per layer, kernel, stride, activation, batch norm,
residual connections, dropout) is an argument here, so a trial is a set of keyword arguments, and a saved model is
rebuilt from the same factory and options.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from tradeoff.errors import ConfigError

Activation = Literal["relu", "gelu", "silu", "tanh"]
Norm = Literal["none", "batch"]
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


def _require(widths: Sequence[int], what: str) -> None:
    if not widths or any(int(w) < 1 for w in widths):
        raise ConfigError(f"{what} must be one or more positive integers, got {list(widths)}",
                          f"e.g. {what}: [32, 32]")


class MLP(nn.Module):
    """Linear layers (batch norm after each with norm: batch), then the classifier."""

    def __init__(self, input_shape: Sequence[int], classes: int, widths: Sequence[int] = (128, 64),
                 activation: Activation = "relu", norm: Norm = "none", dropout: float = 0.0) -> None:
        super().__init__()
        _require(widths, "widths")
        layers: list[nn.Module] = [nn.Flatten()]
        previous = math.prod(input_shape)
        for width in widths:
            layers += [nn.Linear(previous, width), *([nn.BatchNorm1d(width)] if norm == "batch" else []),
                       ACTIVATIONS[activation](), *([nn.Dropout(dropout)] if dropout else [])]
            previous = width
        self.layers = nn.Sequential(*layers, nn.Linear(previous, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class _ConvBlock(nn.Module):
    """conv -> [batch norm] -> activation, with a residual connection where shapes allow and `residual` is on."""

    def __init__(self, dims: int, channels_in: int, channels_out: int, kernel: int, stride: int, activation: Activation,
                 norm: Norm, residual: bool) -> None:
        super().__init__()
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        batch_norm = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
        self.body = nn.Sequential(conv(channels_in, channels_out, kernel, stride=stride, padding=kernel // 2),
                                  *([batch_norm(channels_out)] if norm == "batch" else []), ACTIVATIONS[activation]())
        self.residual = residual and stride == 1 and channels_in == channels_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class CNN(nn.Module):
    """Conv blocks over 1-D signals (input_shape (C, L)) or 2-D images ((C, H, W)), global average pooling, then
    the classifier. `channels` gives the depth and the width of each block; `pool` halves the length (or side)
    after every block that has it on."""

    def __init__(self, input_shape: Sequence[int], classes: int, channels: Sequence[int] = (16, 32), kernel: int = 3,
                 stride: int = 1, activation: Activation = "relu", norm: Norm = "none", residual: bool = False,
                 pool: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        _require(channels, "channels")
        dims = len(input_shape) - 1
        if dims not in (1, 2):
            raise ConfigError(f"cnn takes input_shape (channels, length) or (channels, height, width), got "
                              f"{list(input_shape)}", "give the shape of one sample, e.g. [1, 28, 28]")
        blocks: list[nn.Module] = []
        previous = int(input_shape[0])
        for width in channels:
            blocks.append(_ConvBlock(dims, previous, width, kernel, stride, activation, norm, residual))
            if pool:
                blocks.append(nn.MaxPool1d(2, ceil_mode=True) if dims == 1 else nn.MaxPool2d(2, ceil_mode=True))
            previous = width
        pooling = nn.AdaptiveAvgPool1d(1) if dims == 1 else nn.AdaptiveAvgPool2d(1)
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(pooling, nn.Flatten(), *([nn.Dropout(dropout)] if dropout else []),
                                  nn.Linear(previous, classes))
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == self.dims + 1:  # one channel given without its axis: (N, L) or (N, H, W)
            x = x.unsqueeze(1)
        return self.head(self.features(x))


class GRUClassifier(nn.Module):
    """A GRU over a sequence ((L,) or (L, features) per sample); the last step's state feeds the classifier."""

    def __init__(self, input_shape: Sequence[int], classes: int, hidden: int = 64, layers: int = 1,
                 dropout: float = 0.0) -> None:
        super().__init__()
        features = int(input_shape[1]) if len(input_shape) == 2 else 1
        self.gru = nn.GRU(features, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(-1)
        output, _ = self.gru(x)
        return self.head(output[:, -1])

