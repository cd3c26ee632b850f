"""What the transformer pruning passes share: their options, and for prune.ffn and prune.heads the walk that cuts
every encoder layer in depth order, then distills.

Layers are cut one after another on the partly cut model, so each layer's importance scores and least-squares
refit see the errors of the layers before it and absorb them.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, TypeVar

import numpy as np
from pydantic import Field
from torch import nn

from tradeoff.encoder_structure import require_encoder_layers
from tradeoff.model import ModelHandle
from tradeoff.passes.base import Context, FinetuneConfig, Pass


class TransformerPruningConfig(FinetuneConfig):
    """Options shared by the passes that cut an encoder's heads, neurons or layers."""

    calibration_texts: int = Field(default=128, ge=1)  # texts whose activations rank what to cut
    lr: float = Field(default=5e-5, gt=0.0)
    # weight of every layer's hidden-state distance next to the output loss (0: outputs only). On MiniLM with 260
    # training texts (val cosine): it won at lr 3e-4 (2 of 6 layers dropped: 0.878 vs 0.861; one dropped: 0.937 vs
    # 0.923) and lost a little at lr 5e-5 (one dropped: 0.937 vs 0.942; half the heads: 0.890 vs 0.892); at
    # weight 1 the hidden term drowned the output (0.932, 0.885)
    hidden_state_weight: float = Field(default=0.03, ge=0.0)


class PerLayerPruningConfig(TransformerPruningConfig):
    reconstruct: bool = True  # refit each layer's cut projection by least squares on real tokens


PC = TypeVar("PC", bound=PerLayerPruningConfig)


class PerLayerPruning(Pass[PC]):
    tags = frozenset({"speed", "size", "retrains"})
    accepts = frozenset({"torch"})
    requires = frozenset({"transformer"})

    @abstractmethod
    def prune_layer(self, module: nn.Module, layer: nn.Module, samples: np.ndarray) -> int:
        """Cut `layer` (inside `module`) in place, ranking on `samples`; return how many units it keeps."""

    @abstractmethod
    def shape_layer(self, layer: nn.Module, count: int) -> None:
        """Give `layer` the shapes of one that keeps `count` units, so a saved state dict loads into it."""

    def transform(self, model: ModelHandle, ctx: Context) -> ModelHandle:
        config = self.config
        module = model.torch_module()
        samples = ctx.data.calibration()[: config.calibration_texts]
        kept = {str(index): self.prune_layer(module, layer, samples)
                for index, layer in enumerate(require_encoder_layers(module, self.name))}
        ctx.trainer.finetune(module, ctx, config, hidden_state_weight=config.hidden_state_weight)
        return model.with_module(module, structure_step=self.step(), structure_state={"kept": kept})

    def restructure(self, module: nn.Module, state: dict[str, Any]) -> nn.Module:
        layers = require_encoder_layers(module, self.name)
        for index, count in state["kept"].items():
            self.shape_layer(layers[int(index)], int(count))
        return module
