"""A uniform model soup (Wortsman et al., 2022): models fine-tuned from one start with different data orders lie in
one basin of the loss, so the average of their weights is one model as cheap to run as each, and often better
than a fine-tune alone. On MNIST-5k digits 0-4 -> 5-9 (10 seeds, benchmarks/RESULTS.md) a soup of four fine-tunes
scored 0.9892 at a quarter of the labels where one scored 0.9865, 0.9773 at a tenth where one scored 0.9745; on
MiniLM's topic classification it gained nothing measurable.

Models trained from different random starts share no basin and must not be averaged: the ingredients here are
always copies of one module. Batch-norm statistics are not averaged but measured again on the training inputs,
as torch's SWA utilities do after averaging.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, update_bn

from tradeoff.inputs import as_tensors


class _Spread(nn.Module):
    """Calls the module on a tuple of inputs: update_bn hands a model one object per batch."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return self.module(*inputs)


def uniform_soup(ingredients: list[nn.Module], inputs: np.ndarray, batch_size: int) -> nn.Module:
    """A copy of the first ingredient with every parameter the mean of the ingredients' (same architecture, one
    start), its batch-norm statistics measured again on `inputs` (training inputs, batches of `batch_size`); the
    ingredients are left as they were."""
    averaged = AveragedModel(ingredients[0])  # a copy of the first; its first update copies, later ones average
    for ingredient in ingredients:
        averaged.update_parameters(ingredient)
    soup: nn.Module = averaged.module

    def batches() -> Iterator[list[tuple[torch.Tensor, ...]]]:
        for start in range(0, len(inputs), batch_size):
            yield [as_tensors(inputs[start:start + batch_size])]

    update_bn(batches(), _Spread(soup))
    return soup.eval()
