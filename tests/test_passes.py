"""The conformance suite every registered pass runs, plus what users rely on from each pass."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from tradeoff.data import DataBundle
from tradeoff.errors import ConfigError, ModelError
from tradeoff.evaluation import Evaluator
from tradeoff.metrics import get_metric
from tradeoff.model import ModelHandle
from tradeoff.passes import Context, build_pass, get_pass, registered_passes
from tradeoff.recipe import Recipe
from tradeoff.runtimes import runtime_for
from tradeoff.search.space import TRANSFORMER_ONLY

ALL_PASSES = sorted(registered_passes())
MLP_PASSES = [n for n in ALL_PASSES if n not in TRANSFORMER_ONLY]  # those run on MiniLM in test_transformers


def _input_for(name: str, mlp: ModelHandle, ctx: Context) -> ModelHandle:
    """A model in a format the pass accepts: torch if it can, else the exported graph."""
    return mlp if "torch" in get_pass(name).accepts else build_pass({"pass": "export.onnx"}).apply(mlp, ctx)


def _fingerprint(model: ModelHandle) -> bytes:
    if model.onnx_bytes is not None:
        return model.onnx_bytes
    return b"".join(v.numpy().tobytes() for v in model.module.state_dict().values())


@pytest.fixture(scope="module")
def ctx(digits: DataBundle) -> Context:
    return Context(data=digits, seed=0, threads=2)


@pytest.mark.parametrize("name", ALL_PASSES)
def test_pass_config_round_trips_through_yaml(name: str) -> None:
    step = build_pass({"pass": name}).step()
    assert build_pass(yaml.safe_load(yaml.safe_dump(step))).step() == step


@pytest.mark.parametrize("name", ALL_PASSES)
def test_pass_rejects_unknown_option_naming_it(name: str) -> None:
    with pytest.raises(ConfigError, match="unknown key 'no_such_option'"):
        build_pass({"pass": name, "no_such_option": 1})


@pytest.mark.parametrize("name", MLP_PASSES)
def test_pass_leaves_its_input_untouched_and_is_deterministic(name: str, mlp: ModelHandle, ctx: Context) -> None:
    model = _input_for(name, mlp, ctx)
    before = _fingerprint(model)
    first = build_pass({"pass": name}).apply(model, ctx)
    second = build_pass({"pass": name}).apply(model, ctx)
    assert _fingerprint(model) == before
    batch = ctx.data.val.x[:16]
    np.testing.assert_array_equal(runtime_for(first).load(first, 2)(batch), runtime_for(second).load(second, 2)(batch))


@pytest.mark.parametrize("name", MLP_PASSES)
def test_pass_output_runs_and_saves(name: str, mlp: ModelHandle, ctx: Context, tmp_path) -> None:
    out = build_pass({"pass": name}).apply(_input_for(name, mlp, ctx), ctx)
    outputs = runtime_for(out).load(out, 2)(ctx.data.val.x[:8])
    assert outputs.shape == (8, 10) and np.all(np.isfinite(outputs))
    assert out.save(tmp_path).stat().st_size > 0


@pytest.mark.parametrize("name", [n for n in ALL_PASSES if get_pass(n).accepts != {"torch", "onnx"}])
def test_pass_refuses_a_format_it_cannot_handle_with_the_fix(name: str, mlp: ModelHandle, ctx: Context) -> None:
    wrong = mlp if "torch" not in get_pass(name).accepts else build_pass({"pass": "export.onnx"}).apply(mlp, ctx)
    with pytest.raises(ModelError, match="export.onnx"):
        build_pass({"pass": name}).apply(wrong, ctx)


def test_unknown_pass_suggests_the_closest_name() -> None:
    with pytest.raises(ConfigError, match="did you mean 'quantize.static'"):
        Recipe(steps=({"pass": "quantize.statc"},))


def test_export_verifies_against_torch_and_fails_clearly_on_mismatch(mlp: ModelHandle, ctx: Context) -> None:
    with pytest.raises(ModelError, match="differs from torch"):
        build_pass({"pass": "export.onnx", "atol": 0.0, "rtol": 0.0}).apply(mlp, ctx)


def test_export_handles_any_batch_size(cnn: ModelHandle, digits_images: DataBundle) -> None:
    exported = build_pass({"pass": "export.onnx"}).apply(cnn, Context(data=digits_images, threads=2))
    run = runtime_for(exported).load(exported, 2)
    assert run(digits_images.val.x[:1]).shape == (1, 10)
    assert run(digits_images.val.x[:33]).shape == (33, 10)


@pytest.mark.parametrize("calibration", ["minmax", "entropy", "percentile"])
def test_static_quantization_keeps_accuracy_within_two_points(calibration: str, mlp: ModelHandle,
                                                               ctx: Context) -> None:
    evaluator = Evaluator(mlp, ctx.data, get_metric("accuracy"), 2, (1,))
    recipe = Recipe(steps=({"pass": "export.onnx"}, {"pass": "quantize.static", "calibration": calibration}))
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
    from tradeoff.model import load_artifact

    quantized = Recipe(steps=({"pass": "quantize.dynamic"},)).apply(mlp, ctx)
    quantized.save(tmp_path)
    reloaded = load_artifact(tmp_path)
    batch = ctx.data.test.x[:32]
    np.testing.assert_array_equal(runtime_for(quantized).load(quantized, 2)(batch),
                                  runtime_for(reloaded).load(reloaded, 2)(batch))
