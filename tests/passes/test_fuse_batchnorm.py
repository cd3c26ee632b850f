"""fuse.batchnorm: batch norm disappears into the layer before it, and outputs stay the same."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

import tradeoff as to
from tradeoff.artifact import load_artifact
from tradeoff.data import DataBundle
from tradeoff.model import ModelHandle
from tradeoff.passes import Context, build_pass
from tradeoff.runtimes import runtime_for


class ConvBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Flatten(), nn.Linear(128, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _trained(data: DataBundle) -> ModelHandle:
    module = ConvBN()
    to.training.fit(module, data.train, data.val, epochs=3, seed=0)
    return ModelHandle(module=module.eval(), factory="test_fuse_batchnorm:ConvBN")


def test_batch_norm_is_folded_away_with_unchanged_outputs(digits_images: DataBundle, tmp_path: Path) -> None:
    model = _trained(digits_images)
    fused = build_pass({"pass": "fuse.batchnorm"}).apply(model, Context(data=digits_images))
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fused.module.modules())
    assert any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.module.modules())
    batch = digits_images.test.x[:64]
    expected = runtime_for(model).load(model, 2)(batch)
    np.testing.assert_allclose(runtime_for(fused).load(fused, 2)(batch), expected, atol=1e-4)
    fused.save(tmp_path)
    reloaded = load_artifact(tmp_path)
    np.testing.assert_allclose(runtime_for(reloaded).load(reloaded, 2)(batch), expected, atol=1e-4)


def test_fused_model_exports_to_onnx(digits_images: DataBundle) -> None:
    ctx = Context(data=digits_images)
    fused = build_pass({"pass": "fuse.batchnorm"}).apply(_trained(digits_images), ctx)
    exported = build_pass({"pass": "export.onnx"}).apply(fused, ctx)
    assert "BatchNormalization" not in {n.op_type for n in exported.onnx_model().graph.node}


def test_a_model_without_batch_norm_comes_back_unchanged(mlp: ModelHandle, digits: DataBundle) -> None:
    assert build_pass({"pass": "fuse.batchnorm"}).apply(mlp, Context(data=digits)) is mlp
