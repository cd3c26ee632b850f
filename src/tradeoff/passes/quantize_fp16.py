"""quantize.fp16: halve an ONNX graph's weights; inputs and outputs stay float32 for callers."""

from __future__ import annotations

from onnxruntime.transformers.float16 import convert_float_to_float16
from onnxruntime.transformers.onnx_model import OnnxModel

from tradeoff.model import ModelHandle
from tradeoff.passes.base import Context, Pass, PassConfig, register


class Fp16Config(PassConfig):
    keep_io_types: bool = True


@register
class Fp16Conversion(Pass[Fp16Config]):
    name = "quantize.fp16"
    stage = "quantize"
    tags = frozenset({"size"})
    accepts = frozenset({"onnx"})

    def transform(self, model: ModelHandle, ctx: Context) -> ModelHandle:
        converted = OnnxModel(convert_float_to_float16(model.onnx_model(), keep_io_types=self.config.keep_io_types))
        converted.topological_sort()  # the converter appends its input casts last; the ONNX spec wants them first
        return model.with_onnx(converted.model)
