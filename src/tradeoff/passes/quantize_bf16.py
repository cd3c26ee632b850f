"""quantize.bf16: run the float graph in bfloat16 on OpenVINO, on CPUs with native bf16 instructions.

bf16 keeps float32's range, so unlike int8 it needs no calibration and barely moves the outputs (MiniLM: cosine
0.99999 to FP32), while OpenVINO's bf16 kernels run it 1.3-1.7x faster than FP32 on an AVX512-BF16 CPU. The graph
stays float32: bf16 is OpenVINO's inference precision, and the pass records it in the artifact's metadata so the
precision measured is the precision deployed. ONNX Runtime's CPU provider has no bf16 kernels for these graphs,
so it refuses such an artifact rather than silently run it in float32.

It is a stage of its own, after quantization: after an int8 pass it runs the operators int8 left in float (softmax,
normalization, the unquantized matmuls) in bf16, which OpenVINO does by default on such CPUs, so an int8 model a user
loads into OpenVINO himself gets it (MiniLM with quantize.nncf on an AMX Xeon, one thread: 10% faster at batch 1
and 32, same cosine).
"""

from __future__ import annotations

import importlib.util
from functools import cache

from tradeoff.model import ModelHandle
from tradeoff.passes.base import Context, Pass, PassConfig, register
from tradeoff.runtimes.precision import with_inference_precision


@cache
def cpu_has_bf16() -> bool:
    """Whether OpenVINO is installed and reports native bf16 on this CPU (AVX512-BF16 or AMX)."""
    if importlib.util.find_spec("openvino") is None:
        return False
    from tradeoff.runtimes.openvino import openvino_core

    return "BF16" in openvino_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@register
class Bf16Precision(Pass[PassConfig]):
    name = "quantize.bf16"
    stage = "precision"
    tags = frozenset({"speed"})
    accepts = frozenset({"onnx"})
    runs_only_on = "openvino"
    # The search does not pair it with ONNX Runtime's fused operators: OpenVINO 2026.4 runs MiniLM's fused float
    # graph in bf16 no faster than the unfused one, and cannot load the fused graph's quantized attention at all.
    refuses = frozenset({"ort_fused"})

    @classmethod
    def available(cls) -> bool:
        return cpu_has_bf16()

    def transform(self, model: ModelHandle, ctx: Context) -> ModelHandle:
        return model.with_onnx(with_inference_precision(model.onnx_model(), "bf16")).with_runtime("openvino")
