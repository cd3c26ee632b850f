"""Gradient checkpointing: keep fewer activations for the backward pass and recompute the rest.

Hugging Face models that support it switch it on themselves. Any other model opts in through its nn.Sequential
blocks: while training, each outermost Sequential of two or more modules runs as about sqrt(n) checkpointed
segments (torch.utils.checkpoint.checkpoint_sequential), the classic memory/compute trade (Chen et al., 2016).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint_sequential

from tradeoff.errors import ConfigError


def _outermost_sequentials(module: nn.Module) -> list[nn.Sequential]:
    if isinstance(module, nn.Sequential) and len(module) >= 2:
        return [module]
    return [found for child in module.children() for found in _outermost_sequentials(child)]


def _checkpointed(sequential: nn.Sequential) -> None:
    segments = max(1, round(math.sqrt(len(sequential))))
    plain = sequential.forward

    def forward(x: torch.Tensor) -> torch.Tensor:
        if sequential.training and torch.is_grad_enabled():
            return checkpoint_sequential(sequential, segments, x, use_reentrant=False)
        return plain(x)

    sequential.forward = forward  # type: ignore[method-assign]


@contextlib.contextmanager
def gradient_checkpointing(module: nn.Module) -> Iterator[None]:
    if getattr(module, "supports_gradient_checkpointing", False):
        module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})  # type: ignore[operator]
        try:
            yield
        finally:
            module.gradient_checkpointing_disable()  # type: ignore[operator]
        return
    blocks = _outermost_sequentials(module)
    if not blocks:
        raise ConfigError(f"gradient checkpointing needs blocks to recompute, and {type(module).__name__} has no "
                          "nn.Sequential of two or more modules",
                          "build the model's layers as nn.Sequential blocks, or set train.gradient_checkpointing: "
                          "false")
    for block in blocks:
        _checkpointed(block)
    try:
        yield
    finally:
        for block in blocks:
            del block.forward
