"""prune.threshold: zero each weight whose magnitude is below a fraction of its layer's standard deviation.

An example of a pass written outside tradeoff: one file, registered on import (`search: {plugins:
[threshold_pass]}` in a task file, or the `tradeoff.passes` entry point of a package), then searched, listed and
checked by tradeoff.testing like the passes tradeoff ships.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from tradeoff.distributions import Float
from tradeoff.model import ModelHandle
from tradeoff.passes import Context, Pass, PassConfig, register


class ThresholdConfig(PassConfig):
    threshold: float = Field(default=0.5, gt=0.0, le=3.0)  # in standard deviations of each layer's weights


@register
class ThresholdPruning(Pass[ThresholdConfig]):
    name = "prune.threshold"
    stage = "prune"  # where it goes in a recipe: before export and quantization
    tags = frozenset({"size"})  # presets that favour size search it
    accepts = frozenset({"torch"})
    space = {"threshold": Float(0.1, 1.5)}  # searched as prune__threshold

    def transform(self, model: ModelHandle, ctx: Context) -> ModelHandle:
        module = model.torch_module()  # a private copy: the input model stays as it was
        with torch.no_grad():
            for layer in module.modules():
                if isinstance(layer, nn.Linear | nn.Conv1d | nn.Conv2d):
                    weight = layer.weight
                    weight[weight.abs() < self.config.threshold * weight.std()] = 0.0
        return model.with_module(module)
