"""lowrank.svd: fewer parameters and MACs by the amount the ranks say, outputs close, artifacts that reload."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tradeoff.artifact import load_artifact
from tradeoff.data import DataBundle
from tradeoff.errors import ConfigError, ModelError
from tradeoff.evaluation import Evaluator
from tradeoff.measure import count_macs, count_parameters
from tradeoff.metrics import get_metric
from tradeoff.model import ModelHandle
from tradeoff.passes import Context, build_pass
from tradeoff.runtimes import runtime_for


def test_quarter_rank_cuts_parameters_and_macs_as_the_shapes_say(mlp: ModelHandle, ctx: Context) -> None:
    factored = build_pass({"pass": "lowrank.svd", "rank_ratio": 0.25, "finetune_epochs": 0}).apply(mlp, ctx)
    # 64->128 and 128->64 become rank 16 pairs: 17,226 parameters -> 6,986.
    saved = 2 * (64 * 128 - 16 * (64 + 128))
    assert count_parameters(mlp)[0] - count_parameters(factored)[0] == saved
    assert count_macs(mlp, np.zeros((1, 64), np.float32)) - count_macs(factored, np.zeros((1, 64), np.float32)) == saved
    assert factored.structure_steps[-1]["state"] == {"ranks": {"layers.0": 16, "layers.2": 16}}


def test_layers_below_min_features_are_left_alone(mlp: ModelHandle, ctx: Context) -> None:
    factored = build_pass({"pass": "lowrank.svd", "rank_ratio": 0.25, "finetune_epochs": 0}).apply(mlp, ctx)
    head = factored.module.layers[4]  # 64 -> 10: min(in, out) = 10 < 32
    assert isinstance(head, nn.Linear)
    assert torch.equal(head.weight, mlp.module.layers[4].weight)


def test_fine_tuning_recovers_what_factoring_cost(mlp: ModelHandle, ctx: Context) -> None:
    evaluator = Evaluator(mlp, ctx.data, get_metric("accuracy"), 2, (1,))
    one_shot = build_pass({"pass": "lowrank.svd", "rank_ratio": 0.25, "finetune_epochs": 0}).apply(mlp, ctx)
    tuned = build_pass({"pass": "lowrank.svd", "rank_ratio": 0.25}).apply(mlp, ctx)  # 3 epochs by default
    assert evaluator.score(tuned, "test") >= evaluator.score(one_shot, "test")
    assert evaluator.score(mlp, "test") - evaluator.score(tuned, "test") <= 0.02


@torch.no_grad()
def test_more_energy_kept_means_outputs_closer_to_the_original(mlp: ModelHandle, ctx: Context) -> None:
    # On this trained MLP 95% of the energy takes ranks 38 and 33 (break-even 42.7); 99% would take 54 and 52.
    batch = torch.from_numpy(ctx.data.test.x)
    reference = mlp.module(batch)

    def error(energy: float) -> float:
        factored = build_pass({"pass": "lowrank.svd", "energy": energy, "finetune_epochs": 0}).apply(mlp, ctx)
        return float((factored.module(batch) - reference).norm() / reference.norm())

    kept_most, kept_half = error(0.95), error(0.5)
    assert kept_most < 0.02 and kept_half > 10 * kept_most


def test_artifact_reloads_and_exports_to_onnx(mlp: ModelHandle, ctx: Context, tmp_path: Path) -> None:
    factored = build_pass({"pass": "lowrank.svd", "rank_ratio": 0.25, "finetune_epochs": 1}).apply(mlp, ctx)
    factored.save(tmp_path)
    batch = ctx.data.test.x[:32]
    expected = runtime_for(factored).load(factored, 2)(batch)
    reloaded = load_artifact(tmp_path)
    np.testing.assert_array_equal(runtime_for(reloaded).load(reloaded, 2)(batch), expected)
    exported = build_pass({"pass": "export.onnx"}).apply(factored, ctx)
    np.testing.assert_allclose(runtime_for(exported).load(exported, 2)(batch), expected, atol=1e-4)


@torch.no_grad()
def test_pointwise_convolutions_are_factored_exactly_at_full_energy(digits_images: DataBundle) -> None:
    torch.manual_seed(0)
    pointwise = nn.Conv2d(64, 64, 1, stride=2, padding=1, padding_mode="reflect")
    pointwise.weight.copy_((torch.randn(64, 8) @ torch.randn(8, 64) / 8).reshape(64, 64, 1, 1))  # rank 8
    net = nn.Sequential(nn.Conv2d(1, 64, 3, padding=1), nn.ReLU(), pointwise, nn.Flatten()).eval()
    factored = build_pass({"pass": "lowrank.svd", "energy": 1.0, "finetune_epochs": 0}).apply(
        ModelHandle(module=net), Context(data=digits_images))
    assert isinstance(factored.module[2], nn.Sequential) and factored.module[2][0].out_channels == 8
    batch = torch.from_numpy(digits_images.val.x[:8])
    torch.testing.assert_close(factored.module(batch), net(batch), rtol=1e-4, atol=1e-4)


def test_nothing_to_factor_and_bad_options_are_refused(ctx: Context) -> None:
    tiny = ModelHandle(module=nn.Sequential(nn.Linear(64, 10)))
    with pytest.raises(ModelError, match="min_features"):
        build_pass({"pass": "lowrank.svd"}).apply(tiny, ctx)
    with pytest.raises(ConfigError, match="rank_ratio"):
        build_pass({"pass": "lowrank.svd", "rank_ratio": 1.5})
