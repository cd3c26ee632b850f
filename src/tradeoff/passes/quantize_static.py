"""quantize.static: ONNX Runtime QDQ int8 with activation ranges calibrated on training data."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.registry import QDQRegistry
from pydantic import field_validator

from tradeoff.distributions import Choice
from tradeoff.inputs import as_feeds
from tradeoff.model import ModelHandle
from tradeoff.passes.base import Context, Pass, PassConfig, register
from tradeoff.passes.ort_quantizer import float_nodes, known_operators, prepared, quiet_quantizer

CALIBRATION = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}


class StaticConfig(PassConfig):
    """ONNX Runtime's own defaults (per-tensor weights, int8 activations), which its quantize_static peer runs: on
    LeNet-300-100 per-channel weights cost 15% at batch 1 on an Intel Xeon with AMX, one thread, and uint8
    activations were 2-3% slower at batch 32 (docs/NOTES.md); the search tries per-channel too."""

    calibration: Literal["minmax", "entropy", "percentile"] = "minmax"
    per_channel: bool = False
    percentile: float = 99.999
    activation_type: Literal["uint8", "int8"] = "int8"
    batch_size: int = 32
    operators: tuple[str, ...] = ()  # ONNX operator types to quantize; empty: all it can
    keep_float: tuple[str, ...] = ()  # layers left in float (tradeoff.layers names): the most sensitive ones

    @field_validator("operators")
    @classmethod
    def _known(cls, operators: tuple[str, ...]) -> tuple[str, ...]:
        return known_operators(operators, QDQRegistry)


class _Batches(CalibrationDataReader):
    """Whole batches only: ONNX Runtime's histogram calibrators (entropy, percentile) stack every batch's
    activations into one array and fail on a shorter last batch (MiniLM, 120 texts in batches of 32)."""

    def __init__(self, graph_inputs: list[str], samples: np.ndarray, batch_size: int) -> None:
        size = min(batch_size, len(samples))
        self._batches = iter([as_feeds(samples[i : i + size], graph_inputs)
                              for i in range(0, len(samples) - size + 1, size)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


@register
class StaticQuantization(Pass[StaticConfig]):
    name = "quantize.static"
    stage = "quantize"
    tags = frozenset({"speed", "size"})
    accepts = frozenset({"onnx"})
    space = {"per_channel": Choice((False, True)), "calibration": Choice(("minmax", "entropy", "percentile"))}

    def transform(self, model: ModelHandle, ctx: Context) -> ModelHandle:
        config = self.config
        graph = model.onnx_model()
        batches = _Batches([i.name for i in graph.graph.input], ctx.data.calibration(), config.batch_size)
        with tempfile.TemporaryDirectory() as tmp, quiet_quantizer():
            output, source = Path(tmp) / "quantized.onnx", prepared(graph, Path(tmp))
            quantize_static(
                source, output, batches,
                quant_format=QuantFormat.QDQ, per_channel=config.per_channel,
                activation_type=QuantType.QUInt8 if config.activation_type == "uint8" else QuantType.QInt8,
                weight_type=QuantType.QInt8, calibrate_method=CALIBRATION[config.calibration],
                op_types_to_quantize=list(config.operators) or None,
                nodes_to_exclude=float_nodes(source, config.keep_float),
                extra_options={"CalibPercentile": config.percentile},
            )
            return model.with_onnx(output.read_bytes())
