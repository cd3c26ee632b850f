"""lowrank.svd: fewer parameters and MACs by the amount the ranks say, outputs close, artifacts that reload."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tradeoff.data import DataBundle
from tradeoff.errors import ConfigError, ModelError
from tradeoff.evaluation import Evaluator
from tradeoff.measure import count_macs, count_parameters
from tradeoff.metrics import get_metric
from tradeoff.model import ModelHandle, load_artifact
from tradeoff.passes import Context, build_pass
from tradeoff.runtimes import runtime_for


@pytest.fixture(scope="module")
def ctx(digits: DataBundle) -> Context:
    return Context(data=digits, seed=0, threads=2)


def test_quarter_rank_cuts_parameters_and_macs_as_the_shapes_say(mlp: ModelHandle, ctx: Context) -> None:
    factored = build_pass({"pass": "lowrank.svd", "rank_ratio": 0.25, "finetune_epochs": 0}).apply(mlp, ctx)
    # 64->128 and 128->64 become rank 16 pairs; 64->10 is below min_features and stays.
    saved = 2 * (64 * 128 - 16 * (64 + 128))
    assert count_parameters(mlp)[0] - count_parameters(factored)[0] == saved
    assert count_macs(mlp, (64,)) - count_macs(factored, (64,)) == saved


def test_fine_tuning_keeps_accuracy_within_two_points(mlp: ModelHandle, ctx: Context) -> None:
    factored = build_pass({"pass": "lowrank.svd", "rank_ratio": 0.25, "finetune_epochs": 5}).apply(mlp, ctx)
    evaluator = Evaluator(mlp, ctx.data, get_metric("accuracy"), 2, (1,))
    assert evaluator.score(mlp, "test") - evaluator.score(factored, "test") <= 0.02


def test_more_energy_kept_means_outputs_closer_to_the_original(ctx: Context) -> None:
    torch.manual_seed(0)
    wide = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    for layer in (wide[0], wide[2]):  # a decaying spectrum, as trained layers have
        out_features, in_features = layer.weight.shape
        u, _ = torch.linalg.qr(torch.randn(out_features, in_features))
        v, _ = torch.linalg.qr(torch.randn(in_features, in_features))
        layer.weight.data = u @ torch.diag(0.85 ** torch.arange(in_features, dtype=torch.float32)) @ v.T
    model = ModelHandle(module=wide.eval())
    batch = torch.from_numpy(ctx.data.test.x[:64])
    reference = wide(batch)

    def error(energy: float) -> float:
        factored = build_pass({"pass": "lowrank.svd", "energy": energy, "finetune_epochs": 0}).apply(model, ctx)
        return float((factored.module(batch) - reference).norm() / reference.norm())

    kept_most, kept_half = error(0.99), error(0.5)
    assert kept_most < 0.02 and kept_half > 4 * kept_most


def test_artifact_reloads_and_exports_to_onnx(mlp: ModelHandle, ctx: Context, tmp_path: Path) -> None:
    factored = build_pass({"pass": "lowrank.svd", "rank_ratio": 0.25, "finetune_epochs": 1}).apply(mlp, ctx)
    factored.save(tmp_path)
    batch = ctx.data.test.x[:32]
    expected = runtime_for(factored).load(factored, 2)(batch)
    reloaded = load_artifact(tmp_path)
    np.testing.assert_array_equal(runtime_for(reloaded).load(reloaded, 2)(batch), expected)
    exported = build_pass({"pass": "export.onnx"}).apply(factored, ctx)
    np.testing.assert_allclose(runtime_for(exported).load(exported, 2)(batch), expected, atol=1e-4)


def test_pointwise_convolutions_are_factored_too(digits_images: DataBundle) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 1), nn.ReLU(),
                        nn.Flatten(), nn.Linear(64 * 64, 10)).eval()
    factored = build_pass({"pass": "lowrank.svd", "rank_ratio": 0.25, "finetune_epochs": 0}).apply(
        ModelHandle(module=net), Context(data=digits_images))
    assert isinstance(factored.module[2], nn.Sequential) and factored.module[2][0].out_channels == 16
    assert factored.module(torch.from_numpy(digits_images.val.x[:2])).shape == (2, 10)


def test_nothing_to_factor_and_bad_options_are_refused(ctx: Context) -> None:
    tiny = ModelHandle(module=nn.Sequential(nn.Linear(64, 10)))
    with pytest.raises(ModelError, match="min_features"):
        build_pass({"pass": "lowrank.svd"}).apply(tiny, ctx)
    with pytest.raises(ConfigError, match="rank_ratio"):
        build_pass({"pass": "lowrank.svd", "rank_ratio": 1.5})
