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

import numpy as np
import torch
from pydantic import Field
from torch import nn

from tradeoff.distributions import Float
from tradeoff.encoder_structure import (
    ATTENTION_OUTPUT,
    QUERY_KEY_VALUE,
    attention_heads,
    linear,
    projection_inputs,
    refit_projection,
    replace_linear,
    sliced,
    strongest,
)
from tradeoff.passes.base import register
from tradeoff.passes.encoder_pruning import PerLayerPruning, PerLayerPruningConfig


class HeadPruningConfig(PerLayerPruningConfig):
    amount: float = Field(default=0.25, gt=0.0, lt=1.0)  # fraction of each layer's attention heads removed


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
class HeadPruning(PerLayerPruning[HeadPruningConfig]):
    name = "prune.heads"
    stage = "prune"
    space = {"amount": Float(0.2, 0.7)}

    def prune_layer(self, module: nn.Module, layer: nn.Module, samples: np.ndarray) -> int:
        config = self.config
        heads, size = attention_heads(layer)
        project = linear(layer, ATTENTION_OUTPUT)
        context = projection_inputs(module, project, samples)
        count = max(1, round(heads * (1 - config.amount)))
        keep = strongest(_head_importance(context, project, heads, size), count)
        _shrink(layer, keep, size)
        if config.reconstruct:
            refit_projection(linear(layer, ATTENTION_OUTPUT), context, _columns(keep, size), project.weight)
        return count

    def shape_layer(self, layer: nn.Module, count: int) -> None:
        _shrink(layer, count, attention_heads(layer)[1])
