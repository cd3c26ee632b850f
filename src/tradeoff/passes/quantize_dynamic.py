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
from pydantic import field_validator, model_validator
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
    # layers whose weights take a scale per output channel where the rest take one per tensor: the sensitive ones
    # keep most of per-channel's accuracy at per-tensor's speed (ONNX Runtime's per-channel kernels are slower)
    per_channel_layers: tuple[str, ...] = ()

    @field_validator("operators")
    @classmethod
    def _known(cls, operators: tuple[str, ...]) -> tuple[str, ...]:
        return known_operators(operators, IntegerOpsRegistry)

    @model_validator(mode="after")
    def _one_spelling_per_model(self) -> DynamicConfig:
        """Every layer per channel already: the list adds nothing, so the search does not measure one model twice
        under two recipes."""
        if self.per_channel and self.per_channel_layers:
            object.__setattr__(self, "per_channel_layers", ())
        return self


def quantize_torch_dynamic(module: nn.Module, per_channel: bool, keep_float: tuple[str, ...] = (),
                           per_channel_layers: tuple[str, ...] = ()) -> nn.Module:
    """torch.ao's dynamic quantization: deprecated upstream, still the only built-in torch CPU int8 path.

    Parametrized weights (shared by cluster.weights) are materialised first: torch.ao only takes plain Linear.
    """
    materialize_parametrizations(module)
    fine, coarse = torch.ao.quantization.per_channel_dynamic_qconfig, torch.ao.quantization.default_dynamic_qconfig
    linear = {name for name, m in module.named_modules() if isinstance(m, nn.Linear)}
    for option, names in (("keep_float", keep_float), ("per_channel_layers", per_channel_layers)):
        if unknown := sorted(set(names) - linear):
            raise ModelError(f"quantize.dynamic {option} names {unknown}, which are not Linear layers of this model",
                             f"name layers among {', '.join(sorted(linear))}")
    qconfig = fine if per_channel else coarse
    spec: dict[Any, Any] = ({name: fine if name in per_channel_layers else qconfig
                             for name in linear - set(keep_float)} if keep_float or per_channel_layers
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
        with tempfile.TemporaryDirectory() as tmp, quiet_quantizer():
            output, source = Path(tmp) / "quantized.onnx", prepared(model.onnx_model(), Path(tmp))
            kept: list[str] = []
            fine: list[str] = []
            if config.keep_float or config.per_channel_layers:
                graph = ONNXModel(onnx.load(source))  # ORT rewrites Gemm into MatMul + Add first: name those nodes
                graph.replace_gemm_with_matmul()
                onnx.save(graph.model, source)
                kept = float_nodes(graph.model, config.keep_float)
                fine = [n for n in float_nodes(graph.model, config.per_channel_layers, "per_channel_layers")
                        if n not in kept]
            if fine:  # those first, alone; the second pass leaves what the first rewrote
                self._quantize(source, Path(tmp) / "fine.onnx", True, kept, fine)
                source = Path(tmp) / "fine.onnx"
            self._quantize(source, output, config.per_channel, kept)
            return model.with_onnx(output.read_bytes())

    def _quantize(self, source: Path, output: Path, per_channel: bool, excluded: list[str],
                  only: list[str] | None = None) -> None:
        config = self.config
        quantize_dynamic(source, output, per_channel=per_channel, reduce_range=config.reduce_range,
                         weight_type=QuantType.QInt8 if config.weight_type == "int8" else QuantType.QUInt8,
                         op_types_to_quantize=list(config.operators) or None, nodes_to_quantize=only,
                         nodes_to_exclude=excluded, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})

    def restructure(self, module: nn.Module, state: dict[str, object]) -> nn.Module:
        return quantize_torch_dynamic(module, self.config.per_channel, self.config.keep_float,
                                      self.config.per_channel_layers)
