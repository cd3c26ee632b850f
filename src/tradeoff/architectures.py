"""Models described by a few numbers: MLPs, 1-D and 2-D CNNs and GRUs, for `model.factory` with `model.options`
(`factory: "tradeoff.architectures:CNN"`, `options: {input_shape: [1, 40], classes: 10, channels: [32, 32],
norm: batch}`).

What a tuner or an architecture search varies (depth, width per layer, kernel, stride and padding per block,
activation, batch norm, residual connections, dropout, the classifier head) is an argument here, so a trial is a
set of keyword arguments, and a saved model is rebuilt from the same factory and options.
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
Head = Literal["gap", "flatten"]
PerBlock = int | Sequence[int]  # one value for every block, or one per block
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}


def _require(widths: Sequence[int], what: str) -> None:
    if not widths or any(int(w) < 1 for w in widths):
        raise ConfigError(f"{what} must be one or more positive integers, got {list(widths)}",
                          f"e.g. {what}: [32, 32]")


def _per_block(value: PerBlock, blocks: int, what: str) -> list[int]:
    """`value` for each of `blocks` blocks: an int repeats, a list must have one entry per block."""
    values = [int(value)] * blocks if isinstance(value, int) else [int(v) for v in value]
    if len(values) != blocks:
        raise ConfigError(f"{what} has {len(values)} entries for {blocks} blocks {list(values)}",
                          f"give one {what} or one per entry of channels")
    return values


class _Residual(nn.Module):
    """x + body(x): a skip connection around a block whose output has its input's shape."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class MLP(nn.Module):
    """Linear layers (batch norm after each with norm: batch), then the classifier. With `residual` a layer whose
    width equals its input's adds its input back (the others cannot)."""

    def __init__(self, input_shape: Sequence[int], classes: int, widths: Sequence[int] = (128, 64),
                 activation: Activation = "relu", norm: Norm = "none", dropout: float = 0.0,
                 residual: bool = False) -> None:
        super().__init__()
        _require(widths, "widths")
        layers: list[nn.Module] = [nn.Flatten()]
        previous = math.prod(input_shape)
        for width in widths:
            block = [nn.Linear(previous, width), *([nn.BatchNorm1d(width)] if norm == "batch" else []),
                     ACTIVATIONS[activation](), *([nn.Dropout(dropout)] if dropout else [])]
            layers += [_Residual(nn.Sequential(*block))] if residual and residual_fits(previous, width) else block
            previous = width
        self.layers = nn.Sequential(*layers, nn.Linear(previous, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class _ConvBlock(nn.Module):
    """conv -> [batch norm] -> activation, with a residual connection where shapes allow and `residual` is on."""

    def __init__(self, dims: int, channels_in: int, channels_out: int, kernel: int, stride: int, padding: int,
                 activation: Activation, norm: Norm, residual: bool) -> None:
        super().__init__()
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        batch_norm = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
        self.body = nn.Sequential(conv(channels_in, channels_out, kernel, stride=stride, padding=padding),
                                  *([batch_norm(channels_out)] if norm == "batch" else []), ACTIVATIONS[activation]())
        self.residual = residual and residual_fits(channels_in, channels_out, kernel, stride, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


def residual_fits(width_in: int, width_out: int, kernel: int = 1, stride: int = 1, padding: int = 0) -> bool:
    """Whether a block (a linear layer: the defaults) gives its input's shape back, so a residual connection can
    add the two; elsewhere `residual` changes nothing."""
    return stride == 1 and width_in == width_out and kernel == 2 * padding + 1


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """The length (or side) a convolution leaves of `size`, as torch computes it."""
    return (size + 2 * padding - kernel) // stride + 1


class CNN(nn.Module):
    """Conv blocks over 1-D signals (input_shape (C, L)) or 2-D images ((C, H, W)), then the classifier over
    global average pooling (head: gap) or over all features flattened (head: flatten, as the MNIST-1D paper's CNN:
    position-aware, more weights). `channels` gives the depth and the width of each block; `kernel`, `stride` and
    `padding` one value for all blocks or one per block (padding None: kernel // 2, which keeps the length at
    stride 1); `pool` halves the length (or side) after every block."""

    def __init__(self, input_shape: Sequence[int], classes: int, channels: Sequence[int] = (16, 32),
                 kernel: PerBlock = 3, stride: PerBlock = 1, activation: Activation = "relu", norm: Norm = "none",
                 residual: bool = False, pool: bool = True, dropout: float = 0.0, padding: PerBlock | None = None,
                 head: Head = "gap") -> None:
        super().__init__()
        _require(channels, "channels")
        dims = len(input_shape) - 1
        if dims not in (1, 2):
            raise ConfigError(f"cnn takes input_shape (channels, length) or (channels, height, width), got "
                              f"{list(input_shape)}", "give the shape of one sample, e.g. [1, 28, 28]")
        kernels = _per_block(kernel, len(channels), "kernel")
        strides = _per_block(stride, len(channels), "stride")
        paddings = [k // 2 for k in kernels] if padding is None else _per_block(padding, len(channels), "padding")
        blocks: list[nn.Module] = []
        previous, sides = int(input_shape[0]), [int(side) for side in input_shape[1:]]
        for index, (width, k, s, p) in enumerate(zip(channels, kernels, strides, paddings, strict=True)):
            blocks.append(_ConvBlock(dims, previous, width, k, s, p, activation, norm, residual))
            sides = [conv_output_size(side, k, s, p) for side in sides]
            if pool:
                blocks.append(nn.MaxPool1d(2, ceil_mode=True) if dims == 1 else nn.MaxPool2d(2, ceil_mode=True))
                sides = [math.ceil(side / 2) for side in sides]
            if min(sides) < 1:
                raise ConfigError(f"cnn block {index} leaves nothing of input_shape {list(input_shape)}",
                                  "use fewer blocks, smaller strides or kernels, or more padding")
            previous = width
        self.features = nn.Sequential(*blocks)
        features = previous if head == "gap" else previous * math.prod(sides)
        pooling = [nn.AdaptiveAvgPool1d(1) if dims == 1 else nn.AdaptiveAvgPool2d(1)] if head == "gap" else []
        self.head = nn.Sequential(*pooling, nn.Flatten(), *([nn.Dropout(dropout)] if dropout else []),
                                  nn.Linear(features, classes))
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == self.dims + 1:  # one channel given without its axis: (N, L) or (N, H, W)
            x = x.unsqueeze(1)
        return self.head(self.features(x))


def mnist1d_paper_cnn(input_shape: Sequence[int] = (1, 40), classes: int = 10) -> CNN:
    """The MNIST-1D paper's CNN (Greydanus 2020, `ConvBase` in its repository): three Conv1d of 25 channels
    (kernels 5, 3, 3, stride 2, padding 1) with ReLU, no pooling, and a linear classifier over the flattened
    features; 5,210 parameters at length 40. The reference a search on MNIST-1D has to beat."""
    return CNN(input_shape, classes, channels=[25, 25, 25], kernel=[5, 3, 3], stride=2, padding=1, pool=False,
               head="flatten")


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

