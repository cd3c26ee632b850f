"""Layer sensitivity: measured one layer at a time on validation, and what the search does with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from torch import nn

import tradeoff as to
from tradeoff.config import SensitivitySpec
from tradeoff.data import DataBundle
from tradeoff.errors import ModelError
from tradeoff.evaluation import Evaluator
from tradeoff.insight.sensitivity import measure_sensitivity
from tradeoff.layers import layer_of, weight_layers
from tradeoff.metrics import get_metric
from tradeoff.model import ModelHandle
from tradeoff.passes import Context, build_pass
from tradeoff.recipe import Recipe
from tradeoff.search.space import default_space

STATIC = "quantize.static per_channel=False"


def _float_layers(model: ModelHandle) -> set[str]:
    """Layers whose weight the graph still reads as a float initializer."""
    graph = model.onnx_model().graph
    floats = {t.name for t in graph.initializer if t.data_type == 1}
    return {layer_of(n.input[1]) for n in graph.node if n.op_type in ("Gemm", "MatMul") and n.input[1] in floats}


@pytest.fixture(scope="module")
def measured(mlp: ModelHandle, digits: DataBundle):
    evaluator = Evaluator(mlp, digits, get_metric("accuracy"), 2, (1,))
    spec = SensitivitySpec(quantize=({"pass": "quantize.static", "per_channel": False},), prune=(0.5, 0.95))
    return measure_sensitivity(mlp, evaluator, Context(data=digits, seed=0, threads=2, teacher=mlp), spec)


def test_every_layer_is_measured_under_every_treatment_on_validation(measured, mlp: ModelHandle) -> None:
    assert [layer.layer for layer in measured.layers] == [layer.name for layer in weight_layers(mlp)]
    assert measured.treatments == (STATIC, "prune 50%", "prune 95%")
    for layer in measured.layers:
        assert set(layer.drops) == set(measured.treatments) and all(d is not None for d in layer.drops.values())
        # pruning almost all of one layer moves the outputs far more than pruning half of it
        assert layer.deviations["prune 95%"] > layer.deviations["prune 50%"]
    assert max(layer.drops["prune 95%"] for layer in measured.layers) > 0.05  # some layer cannot lose 95%
    assert set(measured.ranking("prune")) == {layer.layer for layer in measured.layers}


def test_keep_float_leaves_the_named_layers_in_float_and_refuses_unknown_names(mlp: ModelHandle, ctx: Context) -> None:
    exported = build_pass({"pass": "export.onnx"}).apply(mlp, ctx)
    for step in ({"pass": "quantize.static"}, {"pass": "quantize.dynamic"}, {"pass": "quantize.weight_only"}):
        kept = build_pass({**step, "keep_float": ["layers.0", "layers.4"]}).apply(exported, ctx)
        assert _float_layers(kept) == {"layers.0", "layers.4"}, step
        assert _float_layers(build_pass(step).apply(exported, ctx)) == set(), step
    with pytest.raises(ModelError, match=r"names layers \['layers.9'\].*layers.0, layers.2, layers.4"):
        build_pass({"pass": "quantize.static", "keep_float": ["layers.9"]}).apply(exported, ctx)
    mixed = build_pass({"pass": "quantize.weight_only", "keep_float": ["layers.4"], "eight_bit": ["layers.0"]}
                       ).apply(exported, ctx)
    bits = {n.input[1].partition(".weight")[0]: next(a.i for a in n.attribute if a.name == "bits")
            for n in mixed.onnx_model().graph.node if n.op_type == "MatMulNBits"}
    assert bits == {"layers.0": 8, "layers.2": 4} and _float_layers(mixed) == {"layers.4"}
    torch_kept = build_pass({"pass": "quantize.dynamic", "keep_float": ["layers.4"]}).apply(mlp, ctx)
    layers = dict(torch_kept.torch_module().named_modules())
    assert type(layers["layers.4"]) is nn.Linear and type(layers["layers.0"]) is not nn.Linear


def _scales_per_layer(model: ModelHandle) -> dict[str, int]:
    """How many scales each int8 weight matrix carries (1: per tensor; its output width: per channel)."""
    graph = model.onnx_model().graph
    sizes = {t.name: max(1, len(t.dims) and t.dims[0]) for t in graph.initializer}
    return {layer_of(n.input[1]): sizes[n.input[3]] for n in graph.node if n.op_type == "MatMulInteger"}


def test_per_channel_layers_give_the_named_layers_a_scale_per_channel_and_the_rest_one(mlp: ModelHandle,
                                                                                       ctx: Context) -> None:
    exported = build_pass({"pass": "export.onnx"}).apply(mlp, ctx)
    mixed = build_pass({"pass": "quantize.dynamic", "per_channel_layers": ["layers.2"], "keep_float": ["layers.4"]}
                       ).apply(exported, ctx)
    assert _scales_per_layer(mixed) == {"layers.0": 1, "layers.2": 64} and _float_layers(mixed) == {"layers.4"}
    assert set(_scales_per_layer(build_pass({"pass": "quantize.dynamic"}).apply(exported, ctx)).values()) == {1}
    # all per channel already: the list is dropped, so the search never measures one model under two recipes
    assert build_pass({"pass": "quantize.dynamic", "per_channel": True, "per_channel_layers": ["layers.2"]}
                      ).step()["per_channel_layers"] == []
    torch_mixed = build_pass({"pass": "quantize.dynamic", "per_channel_layers": ["layers.2"]}).apply(mlp, ctx)
    schemes = {name: m.weight().qscheme() for name, m in torch_mixed.torch_module().named_modules()
               if hasattr(m, "weight") and callable(m.weight)}
    assert schemes == {"layers.0": torch.per_tensor_affine, "layers.2": torch.per_channel_affine,
                       "layers.4": torch.per_tensor_affine}
    with pytest.raises(ModelError, match=r"per_channel_layers names layers \['layers.9'\]"):
        build_pass({"pass": "quantize.dynamic", "per_channel_layers": ["layers.9"]}).apply(exported, ctx)


def test_the_guided_space_keeps_the_most_sensitive_layers_and_its_recipes_replay_without_the_ranking(
        measured, mlp: ModelHandle, ctx: Context) -> None:
    space = default_space(["export.onnx", "quantize.static", "prune.magnitude"], "auto", frozenset({"torch"}))
    guided = space.guided(measured.rankings(), 2)
    ranking = measured.ranking("quantize")
    trial = optuna.trial.FixedTrial({"export": "export.onnx", "quantize": "quantize.static", "prune": "none",
                                     "quantize__keep_float": 2, "quantize__per_channel": False,
                                     "quantize__calibration": "minmax"})
    recipe = guided.sample(trial)
    assert recipe is not None and recipe.steps[-1]["keep_float"] == list(ranking[:2])
    # the seeds measure each quantizer plain first: sensitivity has to earn the layers it keeps
    assert all(point.get("quantize__keep_float", 0) == 0 for point in guided.single_pass_points("quantize"))
    replayed = Recipe.from_dict(yaml.safe_load(recipe.to_yaml())).apply(mlp, ctx)
    assert _float_layers(replayed) == set(ranking[:2])


def test_optimize_measures_sensitivity_once_and_reports_it(task_file, tmp_path: Path) -> None:
    task = task_file(search={"trials": 3, "seed": 0, "passes": ["export.onnx", "quantize.static"],
                             "sensitivity": {"quantize": [{"pass": "quantize.static"}], "prune": []}})
    result = to.optimize(task, out=tmp_path / "runs", quiet=True)
    report = json.loads(result.report.json_path.read_text())
    assert [layer["layer"] for layer in report["sensitivity"]["layers"]] == ["layers.0", "layers.2", "layers.4"]
    assert (result.run_dir / "sensitivity.json").is_file()
    assert 'id="plot-sensitivity"' in result.report.html_path.read_text()
    steps = [s for t in report["trials"] for s in t["recipe"]["steps"] if s["pass"] == "quantize.static"]
    assert steps and all("keep_float" in s for s in steps)


def test_the_command_writes_the_table_json_and_page(task_file, tmp_path: Path) -> None:
    task = task_file(search={"trials": 1, "sensitivity": {"quantize": [], "prune": [0.9]}})
    tests = str(Path(__file__).parents[1])  # where the task's factory (conftest:DigitsMLP) is found
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), tests]))}
    done = subprocess.run([str(Path(sys.executable).with_name("tradeoff")), "sensitivity", str(task), "--out",
                           str(tmp_path / "runs"), "--json"], capture_output=True, text=True, check=True, env=env)
    printed = json.loads(done.stdout)
    assert printed["treatments"] == ["prune 90%"] and len(printed["layers"]) == 3
    assert json.loads((tmp_path / "runs/digits/sensitivity.json").read_text()) == printed
    assert "prune 90%" in (tmp_path / "runs/digits/sensitivity.html").read_text()
