"""quantize.dynamic: int8 weights, activations quantized on the fly; no calibration data needed."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any, Literal

import onnx
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.quantization.onnx_model import ONNXModel
from onnxruntime.quantization.registry import IntegerOpsRegistry
from pydantic import field_validator
from torch import nn

from tradeoff.distributions import Choice
from tradeoff.errors import ModelError
from tradeoff.model import ModelHandle, materialize_parametrizations
from tradeoff.passes.base import Context, Pass, PassConfig, register
from tradeoff.passes.ort_quantizer import float_nodes, known_operators, prepared, quiet_quantizer


class DynamicConfig(PassConfig):
    per_channel: bool = False
    weight_type: Literal["int8", "uint8"] = "int8"
    reduce_range: bool = False
    operators: tuple[str, ...] = ()  # ONNX operator types to quantize (ONNX models); empty: all it can
    keep_float: tuple[str, ...] = ()  # layers left in float (tradeoff.layers names): the most sensitive ones

    @field_validator("operators")
    @classmethod
    def _known(cls, operators: tuple[str, ...]) -> tuple[str, ...]:
        return known_operators(operators, IntegerOpsRegistry)


def quantize_torch_dynamic(module: nn.Module, per_channel: bool, keep_float: tuple[str, ...] = ()) -> nn.Module:
    """torch.ao's dynamic quantization: deprecated upstream, still the only built-in torch CPU int8 path.

    Parametrized weights (shared by cluster.weights) are materialised first: torch.ao only takes plain Linear.
    """
    materialize_parametrizations(module)
    qconfig = (torch.ao.quantization.per_channel_dynamic_qconfig if per_channel
               else torch.ao.quantization.default_dynamic_qconfig)
    linear = {name for name, m in module.named_modules() if isinstance(m, nn.Linear)}
    if unknown := sorted(set(keep_float) - linear):
        raise ModelError(f"quantize.dynamic keep_float names {unknown}, which are not Linear layers of this model",
                         f"name layers among {', '.join(sorted(linear))}")
    spec: dict[Any, Any] = ({name: qconfig for name in linear - set(keep_float)} if keep_float
                            else {nn.Linear: qconfig})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(module, spec, dtype=torch.qint8)


@register
class DynamicQuantization(Pass[DynamicConfig]):
    name = "quantize.dynamic"
    stage = "quantize"
    tags = frozenset({"speed", "size"})
    accepts = frozenset({"torch", "onnx"})
    space = {"per_channel": Choice((False, True))}

    def transform(self, model: ModelHandle, ctx: Context) -> ModelHandle:
        config = self.config
        if model.format == "torch":
            return model.with_module(self.restructure(model.torch_module(), {}), structure_step=self.step())
        weight_type = QuantType.QInt8 if config.weight_type == "int8" else QuantType.QUInt8
        with tempfile.TemporaryDirectory() as tmp, quiet_quantizer():
            output, source = Path(tmp) / "quantized.onnx", prepared(model.onnx_model(), Path(tmp))
            if config.keep_float:  # ORT rewrites Gemm into MatMul + Add first: the nodes to leave are named after it
                graph = ONNXModel(onnx.load(source))
                graph.replace_gemm_with_matmul()
                onnx.save(graph.model, source)
            quantize_dynamic(source, output, per_channel=config.per_channel,
                             reduce_range=config.reduce_range, weight_type=weight_type,
                             op_types_to_quantize=list(config.operators) or None,
                             nodes_to_exclude=float_nodes(source, config.keep_float),
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
            return model.with_onnx(output.read_bytes())

    def restructure(self, module: nn.Module, state: dict[str, object]) -> nn.Module:
        return quantize_torch_dynamic(module, self.config.per_channel, self.config.keep_float)
