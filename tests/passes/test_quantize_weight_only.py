"""quantize.weight_only: packed 4/8-bit weights run by ONNX Runtime's MatMulNBits kernel, on a trained model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import tradeoff as to
from tradeoff.data import DataBundle
from tradeoff.errors import ConfigError, ModelError
from tradeoff.evaluation import Evaluator
from tradeoff.measure import artifact_size
from tradeoff.metrics import get_metric
from tradeoff.model import ModelHandle
from tradeoff.passes import Context, build_pass
from tradeoff.runtimes import runtime_for


class WideMLP(nn.Module):
    """Layers wide enough that weights, not biases and graph overhead, make up the artifact."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@pytest.fixture(scope="module")
def wide(ctx: Context) -> ModelHandle:
    torch.manual_seed(0)
    module = WideMLP()
    to.training.fit(module, ctx.data.train, ctx.data.val, epochs=15, lr=1e-3, early_stopping={"patience": 5}, seed=0)
    return ModelHandle(module=module.eval())


@pytest.fixture(scope="module")
def wide_onnx(wide: ModelHandle, ctx: Context) -> ModelHandle:
    return build_pass({"pass": "export.onnx"}).apply(wide, ctx)


def _op_types(model: ModelHandle) -> list[str]:
    return [node.op_type for node in model.onnx_model().graph.node]


def test_every_exported_linear_layer_becomes_a_matmulnbits_node(mlp: ModelHandle, ctx: Context) -> None:
    exported = build_pass({"pass": "export.onnx"}).apply(mlp, ctx)
    assert _op_types(exported).count("Gemm") == 3  # how the exporter writes nn.Linear
    quantized = build_pass({"pass": "quantize.weight_only"}).apply(exported, ctx)
    ops = _op_types(quantized)
    assert ops.count("MatMulNBits") == 3 and "Gemm" not in ops and "MatMul" not in ops


@pytest.mark.parametrize(("bits", "min_ratio"), [(4, 5.0), (8, 3.0)])
def test_artifact_shrinks_with_the_bit_width(bits: int, min_ratio: float, wide_onnx: ModelHandle,
                                             ctx: Context) -> None:
    quantized = build_pass({"pass": "quantize.weight_only", "bits": bits}).apply(wide_onnx, ctx)
    assert artifact_size(wide_onnx).bytes / artifact_size(quantized).bytes >= min_ratio


@pytest.mark.parametrize(("step", "max_drop"), [
    ({"bits": 8}, 0.015),
    ({"bits": 8, "symmetric": False, "accuracy_level": 4}, 0.015),
    ({"bits": 4}, 0.03),
    ({"bits": 4, "algorithm": "hqq"}, 0.03),
])
def test_accuracy_on_the_test_split_stays_close_to_float(step: dict[str, object], max_drop: float, wide: ModelHandle,
                                            wide_onnx: ModelHandle, ctx: Context) -> None:
    quantized = build_pass({"pass": "quantize.weight_only", **step}).apply(wide_onnx, ctx)
    evaluator = Evaluator(wide, ctx.data, get_metric("accuracy"), 2, (1,))
    assert evaluator.score(wide_onnx, "test") - evaluator.score(quantized, "test") <= max_drop


@pytest.mark.parametrize("step", [{"bits": 4, "accuracy_level": 4}, {"bits": 8, "block_size": 128}])
def test_quantized_graph_runs_any_batch_size(step: dict[str, object], wide_onnx: ModelHandle, ctx: Context) -> None:
    quantized = build_pass({"pass": "quantize.weight_only", **step}).apply(wide_onnx, ctx)
    run = runtime_for(quantized).load(quantized, 2)
    reference = runtime_for(wide_onnx).load(wide_onnx, 2)(ctx.data.test.x[:33])
    for batch in (1, 33):
        outputs = run(ctx.data.test.x[:batch])
        assert outputs.shape == (batch, 10) and np.all(np.isfinite(outputs))
        assert np.mean(outputs.argmax(1) == reference[:batch].argmax(1)) >= 0.9


def test_torch_model_is_refused_with_export_onnx_as_the_fix(mlp: ModelHandle, ctx: Context) -> None:
    with pytest.raises(ModelError, match="export.onnx"):
        build_pass({"pass": "quantize.weight_only"}).apply(mlp, ctx)


def test_model_without_linear_layers_is_refused(digits_images: DataBundle) -> None:
    torch.manual_seed(0)
    conv_only = ModelHandle(module=nn.Sequential(nn.Conv2d(1, 10, 8), nn.Flatten()).eval())
    context = Context(data=digits_images, threads=2)
    exported = build_pass({"pass": "export.onnx"}).apply(conv_only, context)
    with pytest.raises(ModelError, match="no MatMul or Gemm layer"):
        build_pass({"pass": "quantize.weight_only"}).apply(exported, context)


@pytest.mark.parametrize(("step", "field"), [
    ({"block_size": 48}, "block_size"),
    ({"bits": 2}, "bits"),
    ({"algorithm": "hqq", "bits": 8}, "bits 4 only"),
    ({"algorithm": "hqq", "symmetric": True}, "asymmetric"),
])
def test_unsupported_settings_are_refused_naming_them(step: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        build_pass({"pass": "quantize.weight_only", **step})
