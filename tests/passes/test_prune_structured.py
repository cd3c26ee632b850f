"""prune.structured: a residual CNN with batch norm loses whole channels, stays consistent, and reloads exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import tradeoff as to
from tradeoff.artifact import load_artifact
from tradeoff.data import DataBundle, Split
from tradeoff.errors import ConfigError, ModelError
from tradeoff.measure import count_macs, count_parameters
from tradeoff.model import ModelHandle
from tradeoff.passes import Context, build_pass


class ResidualCNN(nn.Module):
    """Inputs (N, 1, 8, 8); the residual sum ties the stem's channels to the block's last convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                                   nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))
        self.head = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 4 * 4, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.head(torch.relu(x + self.block(x)))


class HardCodedReshapeCNN(nn.Module):
    """Flattens to a fixed width, which no pruning tool can follow once channels are removed."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).view(-1, 8 * 8 * 8))


@pytest.fixture(scope="module")
def ctx(digits_images: DataBundle) -> Context:
    return Context(data=digits_images, seed=0, threads=2)


@pytest.fixture(scope="module")
def resnet(digits_images: DataBundle) -> ModelHandle:
    torch.manual_seed(0)  # the initial weights, independent of the tests that ran before
    module = ResidualCNN()
    to.training.fit(module, digits_images.train, digits_images.val, epochs=15, lr=3e-3,
                    early_stopping={"patience": 5}, seed=0)
    return ModelHandle(module=module.eval(), factory="test_prune_structured:ResidualCNN")


def _prune(model: ModelHandle, ctx: Context, **options: object) -> ModelHandle:
    return build_pass({"pass": "prune.structured", **options}).apply(model, ctx)


def _outputs(model: ModelHandle, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model.module(torch.from_numpy(x)).numpy()  # type: ignore[misc]


def _accuracy(model: ModelHandle, split: Split) -> float:
    return float(np.mean(_outputs(model, split.x).argmax(axis=1) == split.y))


def test_removing_half_the_channels_cuts_parameters_and_macs_by_at_least_40_percent(resnet: ModelHandle,
                                                                                     ctx: Context) -> None:
    pruned = _prune(resnet, ctx, amount=0.5, finetune_epochs=0)
    params, macs = count_parameters(resnet)[0], count_macs(resnet, ctx.data.val.x[:1])
    pruned_params, pruned_macs = count_parameters(pruned)[0], count_macs(pruned, ctx.data.val.x[:1])
    print(f"parameters {params} -> {pruned_params}, MACs {macs} -> {pruned_macs}")
    assert pruned_params <= 0.6 * params and pruned_macs <= 0.6 * macs  # type: ignore[operator]
    module = pruned.module
    assert [m.out_channels for m in (module.stem[0], module.block[0], module.block[3])] == [8, 8, 8]  # type: ignore
    assert module.head[2].in_features == 8 * 4 * 4 and module.head[2].out_features == 10  # type: ignore
    assert _outputs(pruned, ctx.data.test.x).shape == (len(ctx.data.test), 10)


def test_fine_tuned_residual_model_keeps_test_accuracy_within_three_points(resnet: ModelHandle,
                                                                             ctx: Context) -> None:
    pruned = _prune(resnet, ctx, amount=0.5, finetune_epochs=3)
    before, after = _accuracy(resnet, ctx.data.test), _accuracy(pruned, ctx.data.test)
    print(f"test accuracy {before:.4f} -> {after:.4f}")
    assert before - after <= 0.03


@pytest.mark.parametrize("criterion", ["l1", "l2", "taylor", "bn_scale"])
def test_every_criterion_removes_channels_and_keeps_the_output_size(criterion: str, resnet: ModelHandle,
                                                                     ctx: Context) -> None:
    pruned = _prune(resnet, ctx, criterion=criterion, amount=0.25, finetune_epochs=0)
    assert count_parameters(pruned)[0] < count_parameters(resnet)[0]
    outputs = _outputs(pruned, ctx.data.val.x)
    assert outputs.shape == (len(ctx.data.val), 10) and np.all(np.isfinite(outputs))


def test_pruned_artifact_reloads_from_the_factory_with_identical_outputs(resnet: ModelHandle, ctx: Context,
                                                                         tmp_path: Path) -> None:
    pruned = _prune(resnet, ctx, criterion="taylor", global_pruning=True, iterative_steps=2, finetune_epochs=1)
    pruned.save(tmp_path)
    reloaded = load_artifact(tmp_path)
    np.testing.assert_array_equal(_outputs(pruned, ctx.data.test.x), _outputs(reloaded, ctx.data.test.x))


def test_input_handle_is_left_untouched(resnet: ModelHandle, ctx: Context) -> None:
    before = {k: v.clone() for k, v in resnet.module.state_dict().items()}  # type: ignore[union-attr]
    _prune(resnet, ctx, criterion="taylor", finetune_epochs=1)
    after = resnet.module.state_dict()  # type: ignore[union-attr]
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert resnet.structure_steps == ()


@pytest.mark.parametrize("amount", [1.5, 0.0])
def test_amount_outside_zero_to_one_is_a_config_error_naming_the_field(amount: float) -> None:
    with pytest.raises(ConfigError, match="'amount'"):
        build_pass({"pass": "prune.structured", "amount": amount})


def test_bn_scale_criterion_on_a_model_without_batch_norm_names_the_criteria_that_fit(digits: DataBundle) -> None:
    from conftest import DigitsMLP

    with pytest.raises(ModelError, match="no batch norm.*l1, l2 or taylor"):
        _prune(ModelHandle(module=DigitsMLP()), Context(data=digits), criterion="bn_scale")


def test_a_graph_the_tracer_cannot_follow_is_a_model_error_naming_the_layer(ctx: Context) -> None:
    with pytest.raises(ModelError, match="layer 'conv'.*hard-coded sizes"):
        _prune(ModelHandle(module=HardCodedReshapeCNN()), ctx, finetune_epochs=0)
