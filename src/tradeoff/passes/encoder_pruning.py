"""What prune.ffn and prune.heads share: cut every encoder layer in depth order, then distill.

Layers are cut one after another on the partly cut model, so each layer's importance scores and least-squares
refit see the errors of the layers before it and absorb them.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np
from torch import nn

from tradeoff.encoder_structure import require_encoder_layers
from tradeoff.model import ModelHandle
from tradeoff.passes.base import Context, Pass, TransformerPruningConfig


class PerLayerPruningConfig(TransformerPruningConfig):
    reconstruct: bool = True  # refit each layer's cut projection by least squares on real tokens


class PerLayerPruning(Pass):
    accepts = frozenset({"torch"})

    @abstractmethod
    def prune_layer(self, module: nn.Module, layer: nn.Module, samples: np.ndarray) -> int:
        """Cut `layer` (inside `module`) in place, ranking on `samples`; return how many units it keeps."""

    @abstractmethod
    def shape_layer(self, layer: nn.Module, count: int) -> None:
        """Give `layer` the shapes of one that keeps `count` units, so a saved state dict loads into it."""

    def apply(self, model: ModelHandle, ctx: Context) -> ModelHandle:
        self.check_input(model)
        config: PerLayerPruningConfig = self.config  # type: ignore[assignment]
        module = model.torch_module()
        samples = ctx.data.calibration()[: config.calibration_texts]
        kept = {str(index): self.prune_layer(module, layer, samples)
                for index, layer in enumerate(require_encoder_layers(module, self.name))}
        ctx.finetune(module, config, hidden_state_weight=config.hidden_state_weight)
        return model.with_module(module, structure_step=self.step(), structure_state={"kept": kept})

    def restructure(self, module: nn.Module, state: dict[str, Any]) -> nn.Module:
        layers = require_encoder_layers(module, self.name)
        for index, count in state["kept"].items():
            self.shape_layer(layers[int(index)], int(count))
        return module
