"""The ConvNet of the dataset-condensation papers (Zhao, Mopuri & Bilen 2021; Zhao & Bilen 2023): blocks of a 3x3
convolution, instance normalization, ReLU and 2x2 average pooling, then one linear layer. It is the embedder that
distribution matching samples at random and the model a distilled set is judged by, so figures compare with theirs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tradeoff.errors import DataError


def default_depth(height: int, width: int) -> int:
    """The papers' depth 3 (32x32 -> 4x4, 28x28 -> 3x3), fewer blocks where the image would pool below 2x2 (8x8
    digits: 2 blocks, 2x2)."""
    return max(1, min(3, int(math.log2(min(height, width))) - 1))


class ConvNet(nn.Module):
    """`embed` is the pooled feature map flattened (what distribution matching compares), `forward` the logits."""

    def __init__(self, shape: tuple[int, ...], classes: int, width: int = 128, depth: int | None = None) -> None:
        super().__init__()
        if len(shape) != 3:
            raise DataError(f"the ConvNet takes images (channels, height, width), got samples of shape {list(shape)}",
                            "give the image shape (data.shape in the task file)")
        channels, height, width_px = shape
        depth = default_depth(height, width_px) if depth is None else depth
        if min(height, width_px) >> depth < 1:
            raise DataError(f"{height}x{width_px} images are too small for {depth} pooling blocks", "use fewer blocks")
        blocks: list[nn.Module] = []
        for i in range(depth):
            # GroupNorm with a group per channel is instance normalization with a learned scale and shift, as in
            # the papers' code (nn.InstanceNorm2d would carry no affine parameters by default)
            blocks += [nn.Conv2d(channels if i == 0 else width, width, 3, padding=1), nn.GroupNorm(width, width),
                       nn.ReLU(), nn.AvgPool2d(2)]
        self.features = nn.Sequential(*blocks, nn.Flatten())
        self.classifier = nn.Linear(width * (height >> depth) * (width_px >> depth), classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
