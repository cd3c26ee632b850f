"""lowrank.svd: factor Linear and 1x1 Conv layers by truncated SVD into two thinner layers, then fine-tune.

W (out x in) ~ U_r S_r V_r^T becomes in -> r (no bias) then r -> out (with the original bias): fewer
parameters and MACs whenever r (in + out) < in * out, on every runtime, since the result is plain layers.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from pydantic import Field
from torch import nn

from tradeoff.distributions import Float
from tradeoff.errors import ModelError
from tradeoff.model import ModelHandle
from tradeoff.passes.base import Context, FinetuneConfig, Pass, register


class LowRankConfig(FinetuneConfig):
    rank_ratio: float | None = Field(default=None, gt=0.0, lt=1.0)
    energy: float = Field(default=0.9, gt=0.0, le=1.0)
    min_features: int = Field(default=32, ge=1)


def _factorable(layer: nn.Module) -> bool:
    if isinstance(layer, nn.Linear):
        return True
    return isinstance(layer, nn.Conv2d) and layer.kernel_size == (1, 1) and layer.groups == 1


def _shape(layer: nn.Module) -> tuple[int, int]:
    """(out, in) of a Linear or 1x1 Conv."""
    weight = cast(torch.Tensor, layer.weight)
    return weight.shape[0], weight.shape[1]


def _pair(layer: nn.Module, rank: int) -> nn.Sequential:
    """Two layers of the original kind, dtype and device: in -> rank (carrying stride and padding), rank -> out."""
    out_features, in_features = _shape(layer)
    has_bias = layer.bias is not None
    weight = cast(torch.Tensor, layer.weight)
    like: dict[str, Any] = {"dtype": weight.dtype, "device": weight.device}
    if isinstance(layer, nn.Linear):
        return nn.Sequential(nn.Linear(in_features, rank, bias=False, **like),
                             nn.Linear(rank, out_features, bias=has_bias, **like))
    conv = cast(Any, layer)  # torch types stride/padding as tuples of any length
    return nn.Sequential(nn.Conv2d(in_features, rank, 1, stride=conv.stride, padding=conv.padding,
                                   padding_mode=conv.padding_mode, bias=False, **like),
                         nn.Conv2d(rank, out_features, 1, bias=has_bias, **like))


def _rank(singular: torch.Tensor, config: LowRankConfig) -> int:
    if config.rank_ratio is not None:
        return max(1, round(config.rank_ratio * len(singular)))
    energy = torch.cumsum(singular**2, 0) / torch.sum(singular**2)
    return int(torch.searchsorted(energy, torch.tensor(config.energy * (1 - 1e-6))).item()) + 1


def _replace(module: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(module.get_submodule(parent) if parent else module, child, new)


@register
class LowRankFactorization(Pass[LowRankConfig]):
    name = "lowrank.svd"
    stage = "lowrank"
    tags = frozenset({"speed", "size", "retrains", "opt-in"})
    accepts = frozenset({"torch"})
    space = {"energy": Float(0.6, 0.99)}

    def transform(self, model: ModelHandle, ctx: Context) -> ModelHandle:
        config = self.config
        module = model.torch_module()
        ranks: dict[str, int] = {}
        for name, layer in list(module.named_modules()):
            if not _factorable(layer) or min(_shape(layer)) < config.min_features:
                continue
            out_features, in_features = _shape(layer)
            weight = cast(torch.Tensor, layer.weight).detach().reshape(out_features, in_features)
            u, s, vh = torch.linalg.svd(weight.float(), full_matrices=False)  # CPU SVD has no half precision
            rank = _rank(s, config)
            if rank * (in_features + out_features) >= in_features * out_features:
                continue  # factoring would not save parameters
            pair = _pair(layer, rank)
            root = s[:rank].sqrt()
            with torch.no_grad():
                first, second = cast(Any, pair[0]), cast(Any, pair[1])
                first.weight.copy_((root[:, None] * vh[:rank]).reshape(first.weight.shape))
                second.weight.copy_((u[:, :rank] * root[None, :]).reshape(second.weight.shape))
                if layer.bias is not None:
                    second.bias.copy_(cast(torch.Tensor, layer.bias))
            _replace(module, name, pair)
            ranks[name] = rank
        if not ranks:
            raise ModelError(f"lowrank.svd found no Linear or 1x1 Conv layer of at least {config.min_features} "
                             "features that factoring would shrink", "lower min_features or energy")
        ctx.trainer.finetune(module, ctx, config)
        return model.with_module(module, structure_step=self.step(), structure_state={"ranks": ranks})

    def restructure(self, module: nn.Module, state: dict[str, Any]) -> nn.Module:
        for name, rank in state["ranks"].items():
            _replace(module, name, _pair(module.get_submodule(name), rank))
        return module
