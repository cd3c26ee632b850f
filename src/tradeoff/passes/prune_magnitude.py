"""prune.magnitude: zero the smallest weights, one-shot or gradually, and fine-tune between steps.

Uses torch.nn.utils.prune, whose masks stay applied through fine-tuning; the masks are made permanent
before the model is returned, so the artifact's zeros are real (they show in non-zeros and zstd size).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import nn
from torch.nn.utils import prune

from tradeoff.distributions import Choice, Float
from tradeoff.errors import ModelError
from tradeoff.model import ModelHandle
from tradeoff.passes.base import Context, FinetuneConfig, Pass, register

PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class MagnitudeConfig(FinetuneConfig):
    sparsity: float = Field(default=0.8, gt=0.0, lt=1.0)
    scope: Literal["global", "layer"] = "global"
    schedule: Literal["one_shot", "gradual"] = "one_shot"
    steps: int = Field(default=4, ge=1)
    finetune_epochs: int = Field(default=5, ge=0)
    keep_dense: tuple[str, ...] = ()  # layers left unpruned (tradeoff.layers names): the most sensitive ones


def cubic_schedule(final: float, steps: int) -> list[float]:
    """Zhu & Gupta (2017): sparsity rises fast at first, then slowly, s_t = s_f (1 - (1 - t/n)^3)."""
    return [final * (1.0 - (1.0 - t / steps) ** 3) for t in range(1, steps + 1)]


def prunable_weights(module: nn.Module, keep_dense: tuple[str, ...] = ()) -> list[tuple[nn.Module, str]]:
    layers = {name: m for name, m in module.named_modules() if isinstance(m, PRUNABLE)}
    if unknown := sorted(set(keep_dense) - layers.keys()):
        raise ModelError(f"keep_dense names {unknown}, which are not Linear or Conv layers of this model",
                         f"name layers among {', '.join(layers)}")
    return [(m, "weight") for name, m in layers.items() if name not in keep_dense]


def _prune_to(targets: list[tuple[nn.Module, str]], previous: float, target: float, scope: str) -> None:
    """Raise sparsity from `previous` to `target`: torch's pruners take a fraction of what is still unpruned."""
    amount = 1.0 - (1.0 - target) / (1.0 - previous)
    if scope == "global":
        prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=amount)
    else:
        for layer, name in targets:
            prune.l1_unstructured(layer, name, amount=amount)


@register
class MagnitudePruning(Pass[MagnitudeConfig]):
    name = "prune.magnitude"
    stage = "prune"
    tags = frozenset({"size", "retrains"})
    accepts = frozenset({"torch"})
    space = {"sparsity": Float(0.5, 0.98), "schedule": Choice(("one_shot", "gradual"))}

    def transform(self, model: ModelHandle, ctx: Context) -> ModelHandle:
        config = self.config
        module = model.torch_module()
        targets = prunable_weights(module, config.keep_dense)
        if not targets:
            raise ModelError(f"prune.magnitude found no Linear or Conv layer in {type(module).__name__}",
                             "it prunes the weights of nn.Linear and nn.ConvNd layers")
        levels = cubic_schedule(config.sparsity, config.steps) if config.schedule == "gradual" else [config.sparsity]
        previous = 0.0
        for level in levels:
            _prune_to(targets, previous, level, config.scope)
            previous = level
            ctx.trainer.finetune(module, ctx, config)
        for layer, name in targets:
            prune.remove(layer, name)
        return model.with_module(module)
