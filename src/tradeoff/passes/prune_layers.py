"""prune.layers: drop whole encoder layers, the ones that change the hidden states least, then distill.

A layer whose output is nearly its input (high cosine between the two on real tokens, the "block influence" of
ShortGPT) does little the rest of the model cannot absorb, and dropping it saves all of its compute at every
batch size and on every runtime. Layers are dropped one at a time, re-measuring the others after each drop; the
kept layers then learn the hidden states of the original layers they stand for and the original's outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import nn

from tradeoff.distributions import Float
from tradeoff.encoder_structure import SOURCE_LAYER, layer_output, real_tokens, require_encoder_layers, source_layers
from tradeoff.huggingface import transformer_config
from tradeoff.inputs import as_tensors
from tradeoff.model import ModelHandle
from tradeoff.passes.base import Context, Pass, register
from tradeoff.passes.encoder_pruning import TransformerPruningConfig


class LayerDroppingConfig(TransformerPruningConfig):
    amount: float = Field(default=0.2, gt=0.0, lt=1.0)  # fraction of the encoder's layers dropped (at least one)


def block_influence(module: nn.Module, layers: nn.ModuleList, samples: np.ndarray) -> torch.Tensor:
    """Per layer, 1 - the mean cosine between its input and output hidden states on real tokens."""
    states: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def recorder(index: int) -> Callable[[nn.Module, tuple[Any, ...], Any], None]:
        def hook(_: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            states[index] = (args[0], layer_output(output))
        return hook

    sums, tokens = torch.zeros(len(layers), dtype=torch.float64), 0
    hooks = [layer.register_forward_hook(recorder(i)) for i, layer in enumerate(layers)]
    try:
        with torch.no_grad():
            for start in range(0, len(samples), 16):
                batch = samples[start : start + 16]
                inputs = as_tensors(batch)
                module(*inputs)
                mask = real_tokens(batch, inputs)
                for index, (before, after) in states.items():
                    change = 1 - nn.functional.cosine_similarity(before, after, dim=-1)
                    sums[index] += (change[mask] if mask is not None else change).sum().double()
                tokens += int(mask.sum()) if mask is not None else inputs[0].shape[0] * inputs[0].shape[1]
    finally:
        for hook in hooks:
            hook.remove()
    return sums / max(tokens, 1)


def _keep_layers(module: nn.Module, layers: nn.ModuleList, keep: list[int]) -> None:
    """Keep the layers at positions `keep`, each remembering which original layer it is."""
    for index, source in enumerate(source_layers(layers)):
        setattr(layers[index], SOURCE_LAYER, source)
    for index in reversed(range(len(layers))):
        if index not in keep:
            del layers[index]
    config = transformer_config(module)
    if config is not None:
        config.num_hidden_layers = len(layers)


@register
class LayerDropping(Pass[LayerDroppingConfig]):
    name = "prune.layers"
    stage = "prune"
    tags = frozenset({"speed", "size", "retrains"})
    accepts = frozenset({"torch"})
    requires = frozenset({"transformer"})
    space = {"amount": Float(0.2, 0.7)}

    def transform(self, model: ModelHandle, ctx: Context) -> ModelHandle:
        config = self.config
        module = model.torch_module()
        layers = require_encoder_layers(module, self.name)
        samples = ctx.data.calibration()[: config.calibration_texts]
        drop = min(len(layers) - 1, max(1, round(len(layers) * config.amount)))
        positions = list(range(len(layers)))  # positions in the layer list as it was given
        for _ in range(drop):  # one at a time: a layer's influence changes once its neighbour is gone
            weakest = int(torch.argmin(block_influence(module, layers, samples)))
            _keep_layers(module, layers, [i for i in range(len(layers)) if i != weakest])
            del positions[weakest]
        ctx.trainer.finetune(module, ctx, config, hidden_state_weight=config.hidden_state_weight)
        return model.with_module(module, structure_step=self.step(), structure_state={"kept": positions})

    def restructure(self, module: nn.Module, state: dict[str, Any]) -> nn.Module:
        layers = require_encoder_layers(module, self.name)
        _keep_layers(module, layers, [int(i) for i in state["kept"]])
        return module
