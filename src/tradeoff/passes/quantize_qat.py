"""quantize.qat: quantization-aware fine-tuning, so the int8 model that follows loses less than PTQ would.

Weights see per-channel symmetric int8 fake quantization (the grid ONNX Runtime's per-channel static
quantizer uses), activations entering each Linear/Conv see per-tensor uint8 fake quantization with ranges
tracked as moving averages; gradients pass straight through (torch's fake_quantize ops implement the STE).
The result is a float torch model whose weights lie on the int8 grid: follow it with export.onnx and
quantize.static (per-channel) to get the real int8 ONNX artifact.
"""

from __future__ import annotations

from typing import cast

import torch
from pydantic import Field
from torch import nn
from torch.nn.utils import parametrize

from tradeoff.errors import ModelError
from tradeoff.model import ModelHandle, materialize_parametrizations
from tradeoff.passes.base import Context, FinetuneConfig, Pass, register
from tradeoff.passes.prune_magnitude import prunable_weights

INT8_MAX = 127


class QATConfig(FinetuneConfig):
    lr: float = Field(default=1e-4, gt=0.0)
    activations: bool = True
    momentum: float = Field(default=0.1, gt=0.0, le=1.0)


def int8_grid(weight: torch.Tensor) -> torch.Tensor:
    """Per-output-channel symmetric int8 fake quantization of a weight."""
    reduce = tuple(range(1, weight.dim()))
    scale = (weight.detach().abs().amax(dim=reduce) / INT8_MAX).clamp(min=1e-12)
    zero = torch.zeros(scale.shape, dtype=torch.int32, device=weight.device)
    return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -INT8_MAX, INT8_MAX)


class _FakeQuantWeight(nn.Module):
    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return int8_grid(weight)


class _ActivationRange:
    """Moving-average min/max of a layer's input while training; uint8 fake quantization with them."""

    def __init__(self, momentum: float) -> None:
        self.momentum = momentum
        self.low: float | None = None
        self.high: float | None = None

    def __call__(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        x = inputs[0]
        if module.training:
            low, high = float(x.detach().min()), float(x.detach().max())
            self.low = low if self.low is None else (1 - self.momentum) * self.low + self.momentum * low
            self.high = high if self.high is None else (1 - self.momentum) * self.high + self.momentum * high
        if self.low is None or self.high is None:
            return inputs
        low, high = min(self.low, 0.0), max(self.high, 0.0)  # the range must hold zero exactly
        scale = max((high - low) / 255, 1e-12)
        zero_point = int(round(-low / scale))
        return (torch.fake_quantize_per_tensor_affine(x, scale, zero_point, 0, 255), *inputs[1:])


@register
class QuantizationAwareTraining(Pass[QATConfig]):
    name = "quantize.qat"
    stage = "qat"
    tags = frozenset({"retrains", "opt-in"})
    accepts = frozenset({"torch"})

    def transform(self, model: ModelHandle, ctx: Context) -> ModelHandle:
        config = self.config
        module = model.torch_module()
        layers = [layer for layer, _ in prunable_weights(module)]
        if not layers or any(parametrize.is_parametrized(layer) for layer in layers):
            raise ModelError("quantize.qat needs Linear or Conv layers with plain weights",
                             "apply it before cluster.weights, to a model with nn.Linear or nn.ConvNd layers")
        for layer in layers:
            parametrize.register_parametrization(layer, "weight", _FakeQuantWeight())
        hooks = [layer.register_forward_pre_hook(_ActivationRange(config.momentum)) for layer in layers
                 if config.activations]
        try:
            ctx.trainer.finetune(module, ctx, config)
        finally:
            for hook in hooks:
                hook.remove()
        materialize_parametrizations(module)  # keeps the fake-quantized values: the weights sit on the int8 grid
        return model.with_module(module)


def on_int8_grid(layer: nn.Module) -> bool:
    weight = cast(torch.Tensor, layer.weight).detach()
    return bool(torch.equal(int8_grid(weight), weight))
