"""distill.kd: knowledge distillation from the original model (the teacher) into a student.

The student is the model the pass is given (a pruned or factored candidate, recovering with the teacher's soft
targets rather than the labels alone), or a smaller architecture the user names by factory, trained from its
own initialisation. On unlabelled data (embeddings) the student learns the teacher's outputs directly, as every
retraining pass does there; the softened-probability term needs classes and is left out.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import nn

from tradeoff.distributions import Float
from tradeoff.model import ModelHandle, build_module
from tradeoff.passes.base import Context, FinetuneConfig, Pass, register
from tradeoff.training.distill import KnowledgeDistillation
from tradeoff.training.trainer import require_teacher


class DistillConfig(FinetuneConfig):
    student: str | None = None  # "module:factory" of a smaller architecture; None: the model given
    student_options: dict[str, Any] = Field(default_factory=dict)  # the student factory's keyword arguments
    temperature: float = Field(default=4.0, gt=0.0)
    weight: float = Field(default=1.0, ge=0.0)  # of the soft-target term, beside the labels' cross-entropy
    feature_weight: float = Field(default=0.0, ge=0.0)  # hints from the teacher's same-named, same-shaped layers
    finetune_epochs: int = Field(default=10, ge=1)
    seed: int = Field(default=0, ge=0)  # the initial weights of a named student


@register
class KnowledgeDistillationPass(Pass[DistillConfig]):
    name = "distill.kd"
    stage = "distill"
    tags = frozenset({"retrains", "opt-in"})
    accepts = frozenset({"torch"})
    space = {"temperature": Float(1.0, 8.0, log=True), "weight": Float(0.1, 10.0, log=True)}

    def transform(self, model: ModelHandle, ctx: Context) -> ModelHandle:
        config = self.config
        teacher = require_teacher(ctx, "distill.kd").torch_module()
        if config.student is None:
            student = model.torch_module()
        else:
            torch.manual_seed(config.seed)
            student = build_module(config.student, options=config.student_options)
        distillation = KnowledgeDistillation(student, teacher, config.temperature, config.weight,
                                             config.feature_weight) if ctx.data.labelled else None
        ctx.trainer.finetune(student, ctx, config, distillation=distillation)
        if config.student is None:
            return model.with_module(student)
        return model.with_module(student, structure_step=self.step())

    def restructure(self, module: nn.Module, state: dict[str, Any]) -> nn.Module:
        """A named student replaces the architecture the factory rebuilt."""
        if self.config.student is None:
            return module
        return build_module(self.config.student, options=self.config.student_options)
