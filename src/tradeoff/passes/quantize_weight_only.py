"""quantize.weight_only: MatMul/Gemm weights stored in 4 or 8 bits with one scale per block of inputs.

ONNX Runtime's MatMulNBitsQuantizer packs the weights and rewrites each layer into a com.microsoft MatMulNBits
node, whose kernel computes on the packed weights; activations stay float, so no calibration data is needed.
It cuts the artifact about 6x (4 bits) or 3.5x (8 bits); ORT dynamic int8 per-channel cuts it about 3.8x.
"""

from __future__ import annotations

import importlib
import logging
import warnings
from types import ModuleType
from typing import Literal

import onnx
from onnxruntime.quantization.onnx_model import ONNXModel
from pydantic import Field, model_validator

from tradeoff.distributions import Choice
from tradeoff.errors import ModelError
from tradeoff.model import ModelHandle
from tradeoff.passes.base import Context, Pass, PassConfig, register
from tradeoff.passes.ort_quantizer import float_nodes, quiet_quantizer


class WeightOnlyConfig(PassConfig):
    """`symmetric` None means the algorithm's own scheme: rtn symmetric (no zero points stored), hqq asymmetric.

    `accuracy_level` is the MatMulNBits attribute: the lowest precision the kernel may compute in, 0 unset (float),
    1 fp32, 2 fp16, 3 bf16, 4 int8 (activations quantized per block, the fast path on CPUs with VNNI).
    """

    bits: Literal[4, 8] = 4
    block_size: Literal[16, 32, 64, 128, 256] = 32  # the sizes ORT's MLAS kernels pack
    symmetric: bool | None = None
    accuracy_level: int = Field(default=0, ge=0, le=4)
    algorithm: Literal["rtn", "hqq"] = "rtn"
    keep_float: tuple[str, ...] = ()  # layers left in float (tradeoff.layers names): the most sensitive ones
    eight_bit: tuple[str, ...] = ()  # layers stored in 8 bits where the rest take `bits` (4): the next most sensitive

    @model_validator(mode="after")
    def _hqq_supported(self) -> WeightOnlyConfig:
        """HQQ fits float zero points per block: 4 bits only, since ORT's CPU kernel refuses 8-bit weights with
        float zero points, never symmetric, and ORT's HQQ quantizer sets no accuracy level."""
        if self.algorithm == "hqq":
            if self.bits != 4:
                raise ValueError("algorithm 'hqq' supports bits 4 only (ORT's CPU kernel); use algorithm 'rtn'")
            if self.symmetric:
                raise ValueError("algorithm 'hqq' is asymmetric by design; leave symmetric unset or false")
            if self.accuracy_level:
                raise ValueError("algorithm 'hqq' does not set accuracy_level; leave it 0 or use algorithm 'rtn'")
            if self.eight_bit:
                raise ValueError("algorithm 'hqq' has no 8-bit layers (eight_bit); use algorithm 'rtn'")
        return self


def _nbits() -> ModuleType:
    """ORT's weight-only quantizer module, imported late: importing it calls logging.basicConfig(level=INFO),
    which would print every library's INFO logs for the rest of the process, so the root logger is restored."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        return importlib.import_module("onnxruntime.quantization.matmul_nbits_quantizer")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@register
class WeightOnlyQuantization(Pass[WeightOnlyConfig]):
    name = "quantize.weight_only"
    stage = "quantize"
    tags = frozenset({"size", "low-bit"})
    accepts = frozenset({"onnx"})
    provides = frozenset({"ort_fused"})  # MatMulNBits is ONNX Runtime's own operator: NNCF cannot read it
    space = {"bits": Choice((4, 8))}

    def transform(self, model: ModelHandle, ctx: Context) -> ModelHandle:
        config = self.config
        graph = ONNXModel(model.onnx_model())
        # The quantizer rewrites MatMul only, and the exporter writes nn.Linear as Gemm(transB=1): ORT's own
        # rewrite turns each Gemm with alpha = beta = 1 into MatMul (+ Add for the bias) first.
        graph.replace_gemm_with_matmul()
        kept = float_nodes(graph.model, config.keep_float)
        eight_bit = float_nodes(graph.model, config.eight_bit, "eight_bit")
        quantized = _quantized(graph.model, config, config.bits, [*kept, *eight_bit])
        if config.eight_bit:  # the layers left for 8 bits are the MatMuls the first pass did not rewrite
            quantized = _quantized(quantized, config, 8, kept)
        if not any(node.op_type == "MatMulNBits" for node in quantized.graph.node):
            raise ModelError("quantize.weight_only found no MatMul or Gemm layer with a constant weight matrix",
                             "it quantizes linear layers only; use quantize.static for Conv models")
        return model.with_onnx(quantized)


def _quantized(graph: onnx.ModelProto, config: WeightOnlyConfig, bits: int, excluded: list[str]) -> onnx.ModelProto:
    """`graph` with its MatMul weights but `excluded` nodes' stored in `bits`."""
    nbits = _nbits()
    if config.algorithm == "hqq":
        algo = nbits.HQQWeightOnlyQuantConfig(block_size=config.block_size, bits=bits)
    else:  # the default config is round-to-nearest in ORT's C++ kernels; its RTN config is the 4-bit-only INC path
        algo = nbits.DefaultWeightOnlyQuantConfig(block_size=config.block_size, bits=bits,
                                                  is_symmetric=config.symmetric is not False,
                                                  accuracy_level=config.accuracy_level or None)
    with quiet_quantizer(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")  # HQQ's torch.from_numpy
        quantizer = nbits.MatMulNBitsQuantizer(graph, algo_config=algo, nodes_to_exclude=excluded)
        quantizer.process()
    return quantizer.model.model
