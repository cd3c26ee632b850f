"""prune.ffn: remove the least important feed-forward neurons of every encoder layer, then distill.

The feed-forward block holds two thirds of an encoder layer's weights and multiply-accumulates, and its
neurons are independent of one another, so removing one is exact surgery on two Linear layers: a row of the
expansion and the matching column of the projection. The result is a smaller dense model that is faster on every
runtime. Each pruned block's projection is then refit by least squares to rebuild the full block's output from
the kept neurons on real tokens (layer by layer, so later layers absorb earlier errors), and fine-tuning learns the
original's outputs (distillation) when the data has no labels.

Hand-written rather than Torch-Pruning: the two Linear layers of a BERT-family feed-forward block are found by
name, and per-neuron slicing needs no dependency graph; Torch-Pruning's tracer would have to follow attention.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from tradeoff.errors import ModelError
from tradeoff.huggingface import transformer_config
from tradeoff.inputs import as_tensors, input_names
from tradeoff.model import ModelHandle
from tradeoff.passes.base import Context, FinetuneConfig, Pass, register


class FfnPruningConfig(FinetuneConfig):
    amount: float = Field(default=0.3, gt=0.0, lt=1.0)  # fraction of each layer's feed-forward neurons removed
    importance: Literal["weight", "activation"] = "activation"
    reconstruct: bool = True  # refit each pruned block's projection by least squares on real tokens
    calibration_texts: int = Field(default=128, ge=1)
    lr: float = Field(default=5e-5, gt=0.0)


def feed_forward_blocks(module: nn.Module) -> dict[str, tuple[nn.Linear, nn.Linear]]:
    """Each encoder layer's (expansion, projection) Linear pair, by the layer's module path (BERT family)."""
    blocks = {}
    for name, layer in module.named_modules():
        expand = getattr(getattr(layer, "intermediate", None), "dense", None)
        project = getattr(getattr(layer, "output", None), "dense", None)
        if isinstance(expand, nn.Linear) and isinstance(project, nn.Linear):
            blocks[name] = (expand, project)
    return blocks


def _activations(module: nn.Module, name: str, samples: np.ndarray) -> torch.Tensor:
    """The feed-forward activations (after the nonlinearity) of layer `name` on the real tokens of `samples`."""
    captured: list[torch.Tensor] = []
    hook = module.get_submodule(name).intermediate.register_forward_hook(  # type: ignore[union-attr]
        lambda _, __, output: captured.append(output))
    names, rows = input_names(samples), []
    try:
        with torch.no_grad():
            for start in range(0, len(samples), 16):
                inputs = as_tensors(samples[start : start + 16])
                module(*inputs)
                output = captured.pop()
                if "attention_mask" in names:  # real tokens only: padding says nothing about a neuron
                    rows.append(output[inputs[names.index("attention_mask")].bool()])
                else:
                    rows.append(output.flatten(0, -2))
    finally:
        hook.remove()
    return torch.cat(rows)


def _refit_projection(project: nn.Linear, kept: torch.Tensor, target: torch.Tensor, ridge: float = 1e-3) -> None:
    """Least-squares projection weights and bias that rebuild the full block's output from the kept neurons."""
    a = torch.cat([kept.double(), torch.ones(len(kept), 1, dtype=torch.float64)], dim=1)
    gram = a.T @ a
    gram += ridge * gram.diagonal().mean() * torch.eye(len(gram), dtype=torch.float64)
    solution = torch.linalg.solve(gram, a.T @ target.double())
    with torch.no_grad():
        project.weight.copy_(solution[:-1].T.to(project.weight.dtype))
        if project.bias is not None:
            project.bias.add_(solution[-1].to(project.bias.dtype))


def _shrunk(expand: nn.Linear, project: nn.Linear, keep: torch.Tensor | int) -> tuple[nn.Linear, nn.Linear]:
    """New layers holding `keep` neurons: given indices, the kept weights; given a count, shapes only."""
    count = keep if isinstance(keep, int) else len(keep)
    like: dict[str, Any] = {"dtype": expand.weight.dtype, "device": expand.weight.device}
    new_expand = nn.Linear(expand.in_features, count, bias=expand.bias is not None, **like)
    new_project = nn.Linear(count, project.out_features, bias=project.bias is not None, **like)
    if not isinstance(keep, int):
        with torch.no_grad():
            new_expand.weight.copy_(expand.weight[keep])
            if expand.bias is not None:
                new_expand.bias.copy_(expand.bias[keep])
            new_project.weight.copy_(project.weight[:, keep])
            if project.bias is not None:
                new_project.bias.copy_(project.bias)
    return new_expand, new_project


def _replace(module: nn.Module, name: str, expand: nn.Linear, project: nn.Linear) -> None:
    layer = module.get_submodule(name)
    layer.intermediate.dense = expand  # type: ignore[union-attr]
    layer.output.dense = project  # type: ignore[union-attr]


@register
class FfnPruning(Pass):
    name = "prune.ffn"
    Config = FfnPruningConfig
    accepts = frozenset({"torch"})

    def apply(self, model: ModelHandle, ctx: Context) -> ModelHandle:
        self.check_input(model)
        config: FfnPruningConfig = self.config  # type: ignore[assignment]
        module = model.torch_module()
        blocks = feed_forward_blocks(module)
        if not blocks:
            kind = getattr(transformer_config(module), "model_type", type(module).__name__)
            raise ModelError(f"prune.ffn found no feed-forward blocks (intermediate.dense + output.dense) in {kind}",
                             "it prunes BERT-family encoders (BERT, MiniLM, RoBERTa); use prune.structured otherwise")
        samples = ctx.data.calibration()[: config.calibration_texts]
        kept = {}
        by_activation = config.importance == "activation"
        for name, (expand, project) in blocks.items():  # in depth order: later layers see earlier pruning
            activations = _activations(module, name, samples) if by_activation or config.reconstruct else None
            # what a neuron adds to the block's output: its typical |activation| (or input weights) x its output
            if activations is not None and by_activation:
                magnitude = activations.abs().mean(dim=0)
            else:
                magnitude = expand.weight.norm(dim=1)
            importance = magnitude * project.weight.norm(dim=0)
            count = max(1, round(expand.out_features * (1 - config.amount)))
            keep = torch.sort(torch.topk(importance, count).indices).values
            new_expand, new_project = _shrunk(expand, project, keep)
            if activations is not None and config.reconstruct:
                _refit_projection(new_project, activations[:, keep], activations @ project.weight.T)
            _replace(module, name, new_expand, new_project)
            kept[name] = count
        ctx.finetune(module, config)
        return model.with_module(module, structure_step=self.step(), structure_state={"kept": kept})

    def restructure(self, module: nn.Module, state: dict[str, Any]) -> nn.Module:
        blocks = feed_forward_blocks(module)
        for name, count in state["kept"].items():
            _replace(module, name, *_shrunk(*blocks[name], int(count)))
        return module
