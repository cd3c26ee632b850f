"""prune.nm: N:M semi-structured sparsity (keep N of every M consecutive input weights), then fine-tune.

2:4 is what sparse tensor cores accelerate; CPU runtimes here run it as dense, so its gain on CPU is the
compressed size only, and the measured latency says so.
"""

from __future__ import annotations

from typing import cast

import torch
from pydantic import Field, model_validator
from torch import nn
from torch.nn.utils import prune

from tradeoff.errors import ModelError
from tradeoff.model import ModelHandle
from tradeoff.passes.base import Context, FinetuneConfig, Pass, register
from tradeoff.passes.prune_magnitude import prunable_weights


class NMConfig(FinetuneConfig):
    n: int = Field(default=2, ge=1)
    m: int = Field(default=4, ge=2)
    finetune_epochs: int = Field(default=5, ge=0)

    @model_validator(mode="after")
    def _n_below_m(self) -> NMConfig:
        if self.n >= self.m:
            raise ValueError(f"n must be smaller than m, got {self.n}:{self.m}")
        return self


def nm_mask(weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the n largest magnitudes in every group of m consecutive weights along the input axis."""
    rows = weight.detach().abs().reshape(weight.shape[0], -1)
    groups = rows.reshape(rows.shape[0], -1, m)
    keep = groups.topk(n, dim=-1).indices
    mask = torch.zeros_like(groups).scatter_(-1, keep, 1.0)
    return mask.reshape(weight.shape)


@register
class NMPruning(Pass[NMConfig]):
    name = "prune.nm"
    stage = "prune"
    tags = frozenset({"size", "retrains", "opt-in"})
    accepts = frozenset({"torch"})

    def transform(self, model: ModelHandle, ctx: Context) -> ModelHandle:
        config = self.config
        module = model.torch_module()
        # Layers whose input size is not a multiple of m stay dense; the report's per-layer sparsity shows them.
        targets = [(layer, attr) for layer, attr in prunable_weights(module)
                   if _weight(layer)[0].numel() % config.m == 0]
        if not targets:
            raise ModelError(f"prune.nm found no layer whose input size divides by m={config.m}",
                             "choose an m that divides the layers' input sizes")
        for layer, attr in targets:
            prune.custom_from_mask(layer, attr, nm_mask(_weight(layer), config.n, config.m))
        ctx.trainer.finetune(module, ctx, config)
        for layer, attr in targets:
            prune.remove(layer, attr)
        return model.with_module(module)


def _weight(layer: nn.Module) -> torch.Tensor:
    return cast(torch.Tensor, layer.weight)


def is_nm_sparse(layer: nn.Module, n: int, m: int) -> bool:
    weight = _weight(layer)
    groups = (weight != 0).reshape(weight.shape[0], -1, m).sum(dim=-1)
    return bool((groups <= n).all())
