"""quantize.bf16 after an int8 pass: the operators int8 left in float run in bf16 on OpenVINO, as OpenVINO itself
runs them by default on such CPUs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import needs_bf16
from torch import nn

import tradeoff as to
from tradeoff.evaluation import Evaluator
from tradeoff.metrics import get_metric
from tradeoff.model import ModelHandle
from tradeoff.passes import Context
from tradeoff.recipe import Recipe
from tradeoff.runtimes import runtime_for
from tradeoff.runtimes.openvino import compile_onnx

pytestmark = needs_bf16


@pytest.fixture(scope="module")
def normalized(ctx: Context) -> ModelHandle:
    """An MLP with a layer norm and GELU, which NNCF's int8 leaves in float."""
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(64, 64), nn.LayerNorm(64), nn.GELU(), nn.Linear(64, 10))
    to.training.fit(module, ctx.data.train, ctx.data.val, epochs=10, lr=3e-3, seed=0)
    return ModelHandle(module=module.eval())


def test_bf16_after_int8_runs_the_float_rest_in_bf16_on_openvino(normalized: ModelHandle, ctx: Context) -> None:
    recipe = Recipe(steps=({"pass": "export.onnx"}, {"pass": "quantize.nncf"}, {"pass": "quantize.bf16"}))
    int8 = Recipe(steps=recipe.steps[:2]).apply(normalized, ctx)
    both = recipe.apply(normalized, ctx)
    assert both.runtime == "openvino"
    assert compile_onnx(both.onnx_bytes, 2).get_property("INFERENCE_PRECISION_HINT").get_type_name() == "bf16"
    batch = ctx.data.val.x[:64]
    int8_outputs = runtime_for(int8.with_runtime("openvino")).load(int8, 2)(batch)
    both_outputs = runtime_for(both).load(both, 2)(batch)
    assert np.abs(both_outputs - int8_outputs).max() > 1e-5  # bf16 ran, not the f32 pin
    evaluator = Evaluator(normalized, ctx.data, get_metric("accuracy"), 2, (1,))
    assert evaluator.score(both, "val") >= evaluator.score(int8, "val") - 0.01
