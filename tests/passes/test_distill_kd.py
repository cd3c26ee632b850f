"""distill.kd: a small student learns from the original model's softened outputs and beats the same student
trained on the labels alone; a named student architecture is saved and reloaded as itself."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tradeoff.artifact import load_artifact
from tradeoff.config import TrainSpec
from tradeoff.errors import ModelError
from tradeoff.evaluation import Evaluator
from tradeoff.measure import count_parameters
from tradeoff.metrics import get_metric
from tradeoff.model import ModelHandle
from tradeoff.passes import Context, build_pass
from tradeoff.training import Trainer

# 8 hidden units where the teacher has 128 and 64
STUDENT = {"student": "tradeoff.architectures:MLP",
           "student_options": {"input_shape": [64], "classes": 10, "widths": [8]}}


def test_a_distilled_student_beats_the_same_student_trained_on_labels_alone(mlp: ModelHandle, ctx: Context) -> None:
    # A fixed schedule: early stopping on the holdout's cross-entropy cuts distillation short (it optimizes more).
    fixed = replace(ctx, teacher=mlp, trainer=Trainer(TrainSpec(early_stopping=None)))
    evaluator = Evaluator(mlp, ctx.data, get_metric("accuracy"), 2, (1,))

    def accuracy(weight: float, seed: int) -> float:
        step = {"pass": "distill.kd", **STUDENT, "weight": weight, "temperature": 4.0,
                "finetune_epochs": 60, "lr": 3e-3, "seed": seed}
        return evaluator.score(build_pass(step).apply(mlp, fixed), "val")

    alone = np.mean([accuracy(0.0, seed) for seed in range(3)])  # weight 0: the labels' cross-entropy only
    distilled = np.mean([accuracy(3.0, seed) for seed in range(3)])
    assert distilled > alone + 0.005, (distilled, alone)


def test_a_named_student_is_saved_and_reloaded_as_its_own_architecture(mlp: ModelHandle, ctx: Context,
                                                                        tmp_path: Path) -> None:
    student = build_pass({"pass": "distill.kd", **STUDENT, "finetune_epochs": 1}).apply(
        mlp, replace(ctx, teacher=mlp))
    assert count_parameters(student)[0] == 64 * 8 + 8 + 8 * 10 + 10
    student.save(tmp_path / "student")
    loaded = load_artifact(tmp_path / "student")
    batch = torch.from_numpy(ctx.data.test.x[:16])
    with torch.inference_mode():
        assert torch.allclose(loaded.module(batch), student.module(batch))  # type: ignore[misc]


def test_distillation_without_the_original_model_says_what_it_needs(mlp: ModelHandle, ctx: Context) -> None:
    with pytest.raises(ModelError, match="teacher"):
        build_pass({"pass": "distill.kd", "finetune_epochs": 1}).apply(mlp, replace(ctx, teacher=None))
