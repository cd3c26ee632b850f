"""Distillation losses the Trainer adds to the task loss: knowledge distillation of a classifier's softened
outputs, and hidden-state distillation for encoders.

Hidden states: a pruned encoder learns the original's layer outputs, not just its final output. Matching every
layer gives a cut model many more signals per text than one embedding does (TinyBERT, MiniLM and the pruning
papers all rely on it), which matters on the few thousand texts a user has at hand.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from tradeoff.encoder_structure import layer_output, real_tokens, require_encoder_layers, source_layers


def _recorder(store: dict[int, torch.Tensor], index: int) -> Callable[[nn.Module, Any, Any], None]:
    def hook(_: nn.Module, __: Any, output: Any) -> None:
        store[index] = layer_output(output)
    return hook


class HiddenStateDistillation:
    """An extra training loss: each student layer's output against the teacher layer it descends from, as mean
    squared error relative to the teacher's own scale, on real tokens. Used as a context manager (hooks)."""

    def __init__(self, student: nn.Module, teacher: nn.Module, weight: float) -> None:
        self.teacher, self.weight = teacher.eval(), weight
        self.student_layers = require_encoder_layers(student, "hidden-state distillation")
        self.teacher_layers = require_encoder_layers(teacher, "hidden-state distillation")
        self.sources = source_layers(self.student_layers)
        self.student_states: dict[int, torch.Tensor] = {}
        self.teacher_states: dict[int, torch.Tensor] = {}
        self.hooks: list[RemovableHandle] = []

    def __enter__(self) -> HiddenStateDistillation:
        for states, layers in ((self.student_states, self.student_layers), (self.teacher_states, self.teacher_layers)):
            self.hooks += [layer.register_forward_hook(_recorder(states, i)) for i, layer in enumerate(layers)]
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for hook in self.hooks:
            hook.remove()
        self.teacher.to("cpu")  # it followed the student onto the training device; it is the caller's model

    def __call__(self, batch: np.ndarray, inputs: tuple[torch.Tensor, ...], outputs: torch.Tensor) -> torch.Tensor:
        """The loss for the student forward that just ran on `inputs` (`batch` as tensors)."""
        with torch.no_grad():
            self.teacher.to(inputs[0].device)(*inputs)
        mask = real_tokens(batch, inputs)
        terms = []
        for index, source in enumerate(self.sources):
            student, teacher = self.student_states[index], self.teacher_states[source]
            if mask is not None:
                student, teacher = student[mask], teacher[mask]
            terms.append(nn.functional.mse_loss(student, teacher) / teacher.pow(2).mean().clamp(min=1e-12))
        return self.weight * torch.stack(terms).mean()


def _named_leaves(module: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in module.named_modules() if name and not list(m.children())
            and any(True for _ in m.parameters(recurse=False))}


class KnowledgeDistillation:
    """An extra training loss: the student learns the teacher's class probabilities softened by `temperature`
    (Hinton et al., 2015: weight * T^2 * KL(teacher || student), the T^2 keeping the gradients' scale), and, with a
    positive `feature_weight`, the outputs of the teacher's layers of the same name and shape (FitNets-style hints
    where the architectures allow; a student of another architecture simply has fewer such pairs)."""

    def __init__(self, student: nn.Module, teacher: nn.Module, temperature: float, weight: float,
                 feature_weight: float = 0.0) -> None:
        self.teacher, self.temperature, self.weight = teacher.eval(), temperature, weight
        self.feature_weight = feature_weight
        teacher_leaves = _named_leaves(teacher)
        self.pairs = {name: (layer, teacher_leaves[name]) for name, layer in _named_leaves(student).items()
                      if name in teacher_leaves} if feature_weight > 0 else {}
        self.student_features: dict[str, torch.Tensor] = {}
        self.teacher_features: dict[str, torch.Tensor] = {}
        self.hooks: list[RemovableHandle] = []

    def __enter__(self) -> KnowledgeDistillation:
        for name, (student_layer, teacher_layer) in self.pairs.items():
            self.hooks.append(student_layer.register_forward_hook(_feature_recorder(self.student_features, name)))
            self.hooks.append(teacher_layer.register_forward_hook(_feature_recorder(self.teacher_features, name)))
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for hook in self.hooks:
            hook.remove()
        self.teacher.to("cpu")

    def __call__(self, batch: np.ndarray, inputs: tuple[torch.Tensor, ...], outputs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            teacher = self.teacher.to(inputs[0].device)(*inputs).float()
        t = self.temperature
        soft = nn.functional.kl_div(nn.functional.log_softmax(outputs.float() / t, dim=-1),
                                    nn.functional.log_softmax(teacher / t, dim=-1), log_target=True,
                                    reduction="batchmean")
        loss = self.weight * t * t * soft
        matched = [(s, self.teacher_features[n]) for n, s in self.student_features.items()
                   if s.shape == self.teacher_features[n].shape]
        if matched:
            loss = loss + self.feature_weight * torch.stack(
                [nn.functional.mse_loss(s.float(), f.float()) / f.float().pow(2).mean().clamp(min=1e-12)
                 for s, f in matched]).mean()
        return loss


def _feature_recorder(store: dict[str, torch.Tensor], name: str) -> Callable[[nn.Module, Any, Any], None]:
    def hook(_: nn.Module, __: Any, output: Any) -> None:
        store[name] = output
    return hook
