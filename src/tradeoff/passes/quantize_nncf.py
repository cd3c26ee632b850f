"""quantize.nncf: static int8 by OpenVINO's NNCF, the post-training quantizer built for OpenVINO's int8 kernels.

For transformers it applies SmoothQuant (moving activation outliers into the weights) and keeps the operators
int8 would hurt most in float, the reason plain static int8 of an encoder collapses (mean cosine 0.82 on MiniLM
with ONNX Runtime's QDQ) and this one holds (0.997). The result is a QDQ ONNX graph with int8 weights; OpenVINO
runs it fastest, ONNX Runtime runs it too, and `runtime: auto` measures both.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
from typing import Literal

from pydantic import Field

from tradeoff.errors import ModelError
from tradeoff.huggingface import is_transformer, keep_transformer_facts
from tradeoff.inputs import as_feeds
from tradeoff.model import ModelHandle
from tradeoff.passes.base import Context, Pass, PassConfig, register
from tradeoff.passes.fuse_transformer import has_ort_fused_operators


class NncfConfig(PassConfig):
    preset: Literal["performance", "mixed"] = "mixed"  # mixed: asymmetric activations, for GELU/softmax ranges
    model_type: Literal["auto", "transformer", "other"] = "auto"
    fast_bias_correction: bool = True
    subset_size: int = Field(default=300, ge=1)


@register
class NncfQuantization(Pass):
    name = "quantize.nncf"
    Config = NncfConfig
    accepts = frozenset({"onnx"})

    @classmethod
    def available(cls) -> bool:
        return importlib.util.find_spec("nncf") is not None

    def apply(self, model: ModelHandle, ctx: Context) -> ModelHandle:
        self.check_input(model)
        config: NncfConfig = self.config  # type: ignore[assignment]
        if not self.available():
            raise ModelError("quantize.nncf needs the nncf package", "pip install 'tradeoff[openvino]'")
        graph = model.onnx_model()
        if has_ort_fused_operators(graph):
            raise ModelError("quantize.nncf cannot read ONNX Runtime's fused operators",
                             "put it right after export.onnx, without fuse.transformer")
        import nncf

        samples = ctx.data.calibration()
        names = [i.name for i in graph.graph.input]
        transformer = config.model_type == "transformer" or (config.model_type == "auto" and is_transformer(model))
        nncf.set_log_level(logging.ERROR)
        preset = nncf.QuantizationPreset.MIXED if config.preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            quantized = nncf.quantize(
                graph, nncf.Dataset([as_feeds(samples[i : i + 1], names) for i in range(len(samples))]),
                preset=preset,
                model_type=nncf.ModelType.TRANSFORMER if transformer else None,
                fast_bias_correction=config.fast_bias_correction, subset_size=min(config.subset_size, len(samples)))
        keep_transformer_facts(graph, quantized)
        return model.with_onnx(quantized)
