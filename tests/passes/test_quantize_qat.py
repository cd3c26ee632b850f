"""quantize.qat: weights trained onto the int8 grid, so the real int8 ONNX model reproduces what was trained."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tradeoff.errors import ModelError
from tradeoff.evaluation import Evaluator
from tradeoff.metrics import get_metric
from tradeoff.model import ModelHandle
from tradeoff.passes import Context, build_pass
from tradeoff.passes.prune_magnitude import prunable_weights
from tradeoff.passes.quantize_qat import on_int8_grid
from tradeoff.recipe import Recipe
from tradeoff.runtimes import runtime_for

INT8_TAIL = ({"pass": "export.onnx"}, {"pass": "quantize.static", "per_channel": True})


@pytest.fixture(scope="module")
def qat(mlp: ModelHandle, ctx: Context) -> ModelHandle:
    return build_pass({"pass": "quantize.qat"}).apply(mlp, ctx)


def test_trained_weights_lie_on_the_per_channel_int8_grid(qat: ModelHandle, mlp: ModelHandle) -> None:
    assert all(on_int8_grid(layer) for layer, _ in prunable_weights(qat.module))
    assert not all(on_int8_grid(layer) for layer, _ in prunable_weights(mlp.module))


def test_int8_onnx_artifact_reproduces_the_quantization_aware_model(qat: ModelHandle, ctx: Context) -> None:
    int8 = Recipe(steps=INT8_TAIL).apply(qat, ctx)
    assert {n.op_type for n in int8.onnx_model().graph.node} >= {"QuantizeLinear", "DequantizeLinear"}
    batch = ctx.data.test.x
    trained = runtime_for(qat).load(qat, 2)(batch).argmax(axis=1)
    deployed = runtime_for(int8).load(int8, 2)(batch).argmax(axis=1)
    assert np.mean(trained == deployed) >= 0.99


def test_qat_then_int8_loses_no_more_than_post_training_quantization(qat: ModelHandle, mlp: ModelHandle,
                                                                      ctx: Context) -> None:
    evaluator = Evaluator(mlp, ctx.data, get_metric("accuracy"), 2, (1,))
    ptq = evaluator.score(Recipe(steps=INT8_TAIL).apply(mlp, ctx), "test")
    after_qat = evaluator.score(Recipe(steps=INT8_TAIL).apply(qat, ctx), "test")
    assert after_qat >= ptq - 0.005


def test_shared_weights_are_refused(mlp: ModelHandle, ctx: Context) -> None:
    shared = build_pass({"pass": "cluster.weights", "finetune_epochs": 0}).apply(mlp, ctx)
    with pytest.raises(ModelError, match="before cluster.weights"):
        build_pass({"pass": "quantize.qat"}).apply(shared, ctx)


def test_activation_ranges_are_not_left_hooked_on_the_model(qat: ModelHandle) -> None:
    assert all(not layer._forward_pre_hooks for layer in qat.module.modules())
    assert all(isinstance(layer.weight, torch.nn.Parameter) for layer, _ in prunable_weights(qat.module))
