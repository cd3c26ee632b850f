"""Transfer learning: a pretrained model gets a new head for a new label set, then learns it the ULMFiT way
(Howard & Ruder, 2018): the head alone first, then one more layer group from the top each epoch (gradual
unfreezing), each group at a learning rate `decay` times lower than the group above it (discriminative rates).

A model's layer groups, bottom to top: for a BERT-family encoder its embeddings, each encoder layer, then the head;
for any other model each module that holds parameters itself, in the order they are registered.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tradeoff.encoder_structure import encoder_layers
from tradeoff.errors import ModelError
from tradeoff.huggingface import SentenceEmbedding


class EmbeddingClassifier(nn.Module):
    """A classification head on a sentence encoder's embedding."""

    def __init__(self, embedding: nn.Module, width: int, classes: int) -> None:
        super().__init__()
        self.embedding = embedding
        self.head = nn.Linear(width, classes)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.embedding(*inputs))


def _last_linear(module: nn.Module) -> tuple[str, nn.Linear]:
    linears = [(name, m) for name, m in module.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ModelError(f"transfer found no nn.Linear head in {type(module).__name__} to replace",
                         "give a model whose last layer is an nn.Linear classifier, or a sentence encoder")
    return linears[-1]


def with_new_head(module: nn.Module, classes: int,
                  embedding_width: int | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """`module` with a freshly initialised head of `classes` outputs, and the state that rebuilds that structure:
    a sentence encoder gets a head on its embedding; any other model's last nn.Linear is replaced."""
    if isinstance(module, SentenceEmbedding):
        if embedding_width is None:
            embedding_width = int(module.encoder.config.hidden_size)  # type: ignore[union-attr, arg-type]
        return EmbeddingClassifier(module, embedding_width, classes), {"embedding_width": embedding_width,
                                                                       "classes": classes}
    name, old = _last_linear(module)
    parent, _, child = name.rpartition(".")
    setattr(module.get_submodule(parent) if parent else module, child,
            nn.Linear(old.in_features, classes, bias=old.bias is not None))
    return module, {"head": name, "classes": classes}


def rebuild_head(module: nn.Module, state: dict[str, Any]) -> nn.Module:
    return with_new_head(module, state["classes"], state.get("embedding_width"))[0]


def layer_groups(module: nn.Module) -> list[list[nn.Parameter]]:
    """The parameters in groups, bottom to top; the head is the last group."""
    layers = encoder_layers(module)
    if layers is not None:
        in_layers = {id(p) for layer in layers for p in layer.parameters()}
        head = list(module.head.parameters()) if isinstance(module, EmbeddingClassifier) else []
        in_head = {id(p) for p in head}
        below = [p for p in module.parameters() if id(p) not in in_layers and id(p) not in in_head]
        groups = [below, *[list(layer.parameters()) for layer in layers], head]
        return [g for g in groups if g]
    return [own for m in module.modules() if (own := list(m.parameters(recurse=False)))]


class GradualUnfreezing:
    """Freezes all groups but the top `unfrozen(epoch)`: the head for `head_epochs` epochs, then one group more per
    epoch. Frozen parameters get no gradient, so the optimizer leaves them (and their weight decay) alone."""

    def __init__(self, groups: list[list[nn.Parameter]], head_epochs: int) -> None:
        self.groups, self.head_epochs = groups, head_epochs

    def unfrozen(self, epoch: int) -> int:
        return min(len(self.groups), 1 + max(0, epoch - self.head_epochs))

    def __call__(self, epoch: int) -> None:
        cut = len(self.groups) - self.unfrozen(epoch)
        for index, group in enumerate(self.groups):
            for parameter in group:
                parameter.requires_grad_(index >= cut)


def discriminative_groups(groups: list[list[nn.Parameter]], lr: float, decay: float) -> list[dict[str, Any]]:
    """torch optimizer parameter groups: the top group at `lr`, each one below `decay` times lower."""
    top = len(groups) - 1
    return [{"params": group, "lr": lr / decay ** (top - index)} for index, group in enumerate(groups)]
