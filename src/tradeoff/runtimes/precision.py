"""The inference precision an ONNX artifact asks its runtime for, kept in the graph's metadata."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

import onnx

from tradeoff.errors import RuntimeBackendError

InferencePrecision = Literal["f32", "bf16"]
PRECISION_KEY = "tradeoff.inference_precision"


def with_inference_precision(graph: onnx.ModelProto, precision: InferencePrecision) -> onnx.ModelProto:
    kept = [p for p in graph.metadata_props if p.key != PRECISION_KEY]
    del graph.metadata_props[:]
    graph.metadata_props.extend(kept)
    graph.metadata_props.add(key=PRECISION_KEY, value=precision)
    return graph


def inference_precision(metadata: Mapping[str, str]) -> InferencePrecision:
    """The precision the metadata (an ONNX graph's, as a runtime reads it) asks for; f32 when it says none."""
    value = metadata.get(PRECISION_KEY, "f32")
    if value not in get_args(InferencePrecision):
        raise RuntimeBackendError(f"the artifact asks for inference precision '{value}', which tradeoff does not know",
                                  "re-run the recipe with this version of tradeoff")
    return value  # type: ignore[return-value]
