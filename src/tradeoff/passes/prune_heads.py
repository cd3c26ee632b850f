"""prune.heads: remove the least important attention heads of every encoder layer, then distill.

A head is a slice of the query, key and value projections and the matching input columns of the attention's
output projection, so removing it is exact surgery that shrinks four matrix products and the attention itself.
Heads are ranked by what they add to the attention output on real tokens (the norm of their context through the
output projection), the output projection is refit by least squares to rebuild the full attention output from
the kept heads, layer by layer, and fine-tuning distills the original's outputs and hidden states.

Every layer keeps the same number of heads: ONNX Runtime's Attention fusion takes one head count per graph, and
fused attention is worth more on a CPU than uneven pruning would.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import nn

from tradeoff.encoder_structure import (
    ATTENTION_OUTPUT,
    QUERY_KEY_VALUE,
    attention_heads,
    linear,
    projection_inputs,
    refit_projection,
    replace_linear,
    require_encoder_layers,
    sliced,
)
from tradeoff.model import ModelHandle
from tradeoff.passes.base import Context, Pass, TransformerPruningConfig, register


class HeadPruningConfig(TransformerPruningConfig):
    amount: float = Field(default=0.25, gt=0.0, lt=1.0)  # fraction of each layer's attention heads removed
    reconstruct: bool = True  # refit each layer's attention output projection by least squares on real tokens


def _head_importance(context: torch.Tensor, project: nn.Linear, heads: int, size: int) -> torch.Tensor:
    """Mean norm, over tokens, of each head's contribution to the attention output."""
    weight = project.weight.detach()
    return torch.stack([(context[:, h * size : (h + 1) * size] @ weight[:, h * size : (h + 1) * size].T)
                        .norm(dim=1).mean() for h in range(heads)])


def _columns(heads: torch.Tensor, size: int) -> torch.Tensor:
    """The projection rows (query, key, value) or columns (output) that hold `heads`."""
    return (heads[:, None] * size + torch.arange(size)).flatten()


def _shrink(layer: nn.Module, keep: torch.Tensor | int, size: int) -> None:
    """Keep the heads `keep` (indices) of `layer`, or shape it for `keep` heads (a count)."""
    columns = keep * size if isinstance(keep, int) else _columns(keep, size)
    for path in QUERY_KEY_VALUE:
        replace_linear(layer, path, sliced(linear(layer, path), columns, dim=0))
    replace_linear(layer, ATTENTION_OUTPUT, sliced(linear(layer, ATTENTION_OUTPUT), columns, dim=1))
    heads = keep if isinstance(keep, int) else len(keep)
    attention: Any = layer.get_submodule("attention.self")
    attention.num_attention_heads, attention.all_head_size = heads, heads * size  # what transformers reads


@register
class HeadPruning(Pass):
    name = "prune.heads"
    Config = HeadPruningConfig
    accepts = frozenset({"torch"})

    def apply(self, model: ModelHandle, ctx: Context) -> ModelHandle:
        self.check_input(model)
        config: HeadPruningConfig = self.config  # type: ignore[assignment]
        module = model.torch_module()
        samples = ctx.data.calibration()[: config.calibration_texts]
        kept = {}
        for index, layer in enumerate(require_encoder_layers(module, self.name)):  # later layers see earlier cuts
            heads, size = attention_heads(layer)
            project = linear(layer, ATTENTION_OUTPUT)
            context = projection_inputs(module, project, samples)
            count = max(1, round(heads * (1 - config.amount)))
            keep = torch.sort(torch.topk(_head_importance(context, project, heads, size), count).indices).values
            _shrink(layer, keep, size)
            if config.reconstruct:
                refit_projection(linear(layer, ATTENTION_OUTPUT), context[:, _columns(keep, size)],
                                 context @ project.weight.T)
            kept[str(index)] = count
        ctx.finetune(module, config, hidden_state_weight=config.hidden_state_weight)
        return model.with_module(module, structure_step=self.step(), structure_state={"kept": kept})

    def restructure(self, module: nn.Module, state: dict[str, Any]) -> nn.Module:
        layers = require_encoder_layers(module, self.name)
        for index, count in state["kept"].items():
            _shrink(layers[int(index)], int(count), attention_heads(layers[int(index)])[1])
        return module
