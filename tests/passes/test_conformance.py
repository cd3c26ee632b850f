"""Every registered pass through the shipped conformance suite, plus what users rely on from the catalogue."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tradeoff.artifact import load_artifact
from tradeoff.data import DataBundle
from tradeoff.errors import ConfigError, ModelError
from tradeoff.evaluation import Evaluator
from tradeoff.metrics import get_metric
from tradeoff.model import ModelHandle
from tradeoff.passes import STAGES, TAGS, Context, build_pass, get_pass, registered_passes
from tradeoff.recipe import Recipe
from tradeoff.runtimes import runtime_for
from tradeoff.testing import PassCase, conformance_checks

MLP_PASSES = [n for n, kind in registered_passes().items() if "transformer" not in kind.requires]
CHECKS = conformance_checks()


@pytest.fixture(scope="module")
def exported_mlp(mlp: ModelHandle, ctx: Context) -> ModelHandle:
    return build_pass({"pass": "export.onnx"}).apply(mlp, ctx)


@pytest.fixture(scope="module")
def mlp_cases(mlp: ModelHandle, exported_mlp: ModelHandle, ctx: Context) -> dict[str, PassCase]:
    """One case per pass, shared by the checks so each pass is applied as few times as the checks need. The
    original model is the teacher, as in a search."""
    ctx = replace(ctx, teacher=mlp)
    cases = {}
    for name in MLP_PASSES:
        accepts = get_pass(name).accepts
        model = mlp if "torch" in accepts else exported_mlp
        wrong = None if accepts == {"torch", "onnx"} else (exported_mlp if "torch" in accepts else mlp)
        cases[name] = PassCase(name, model=model, ctx=ctx, wrong=wrong)
    return cases


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
@pytest.mark.parametrize("name", MLP_PASSES)
def test_pass_conforms(name: str, check: Callable[[PassCase, Path], None], mlp_cases: dict[str, PassCase],
                       tmp_path: Path) -> None:
    check(mlp_cases[name], tmp_path)


def test_every_pass_declares_a_known_stage_and_tags() -> None:
    for name, kind in registered_passes().items():
        assert kind.stage in STAGES and kind.tags <= TAGS, name
        assert set(kind.space) <= set(kind.Config.model_fields), name


def test_unknown_pass_suggests_the_closest_name() -> None:
    with pytest.raises(ConfigError, match="did you mean 'quantize.static'"):
        Recipe(steps=({"pass": "quantize.statc"},))


def test_a_recipe_step_of_another_config_version_is_refused() -> None:
    with pytest.raises(ConfigError, match="config version 2"):
        build_pass({"pass": "quantize.static", "version": 2})


class NoisyMLP(nn.Module):
    """Draws noise at inference (a noise layer left on): no exported graph reproduces torch's draws. (An exact
    tolerance on a plain MLP is no mismatch for sure: on an Intel Xeon with AMX ONNX Runtime matched torch bit for
    bit.)"""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x + 0.1 * torch.randn_like(x))


def test_export_verifies_against_torch_and_fails_clearly_on_mismatch(ctx: Context) -> None:
    with pytest.raises(ModelError, match="differs from torch"):
        build_pass({"pass": "export.onnx"}).apply(ModelHandle(module=NoisyMLP().eval()), ctx)


def test_export_handles_any_batch_size(cnn: ModelHandle, digits_images: DataBundle) -> None:
    exported = build_pass({"pass": "export.onnx"}).apply(cnn, Context(data=digits_images, threads=2))
    run = runtime_for(exported).load(exported, 2)
    assert run(digits_images.val.x[:1]).shape == (1, 10)
    assert run(digits_images.val.x[:33]).shape == (33, 10)


@pytest.mark.parametrize("calibration", ["minmax", "entropy", "percentile"])
def test_static_quantization_keeps_accuracy_within_two_points(calibration: str, mlp: ModelHandle,
                                                               ctx: Context) -> None:
    """Calibrated in batches of 100 that do not divide the 256 calibration samples (ONNX Runtime's histogram
    calibrators fail on a shorter last batch)."""
    evaluator = Evaluator(mlp, ctx.data, get_metric("accuracy"), 2, (1,))
    assert len(ctx.data.calibration()) % 100
    recipe = Recipe(steps=({"pass": "export.onnx"},
                           {"pass": "quantize.static", "calibration": calibration, "batch_size": 100}))
    quantized = recipe.apply(mlp, ctx)
    assert evaluator.score(mlp, "test") - evaluator.score(quantized, "test") <= 0.02


def test_int8_artifacts_are_at_least_two_and_a_half_times_smaller(mlp: ModelHandle, ctx: Context, tmp_path) -> None:
    base = mlp.save(tmp_path / "base").stat().st_size
    for recipe in ([{"pass": "quantize.dynamic"}],
                   [{"pass": "export.onnx"}, {"pass": "quantize.dynamic", "per_channel": True}]):
        quantized = Recipe(steps=tuple(recipe)).apply(mlp, ctx)
        assert base / quantized.save(tmp_path / str(len(recipe))).stat().st_size >= 2.5


def test_torch_dynamic_quantization_artifact_reloads_with_same_outputs(mlp: ModelHandle, ctx: Context,
                                                                         tmp_path) -> None:
    quantized = Recipe(steps=({"pass": "quantize.dynamic"},)).apply(mlp, ctx)
    quantized.save(tmp_path)
    reloaded = load_artifact(tmp_path)
    batch = ctx.data.test.x[:32]
    np.testing.assert_array_equal(runtime_for(quantized).load(quantized, 2)(batch),
                                  runtime_for(reloaded).load(reloaded, 2)(batch))
