"""Plumbing the ONNX Runtime int8 passes share: pre-processing and silencing the quantizer's console output."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path

import onnx
from onnxruntime.quantization.shape_inference import quant_pre_process

from tradeoff.layers import nodes_of_layers
from tradeoff.passes.fuse_transformer import has_ort_fused_operators
from tradeoff.scratch import scratch_directory


@contextlib.contextmanager
def quiet_quantizer() -> Iterator[None]:
    """The quantizer prints calibration progress and logs advice to the root logger; a run's output is ours."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def known_operators(operators: tuple[str, ...], registry: Mapping[str, object]) -> tuple[str, ...]:
    """The operator types a pass is told to quantize, each one the quantizer can handle (it ignores the rest
    silently, which would leave a user believing a layer was quantized)."""
    unknown = [op for op in operators if op not in registry]
    if unknown:
        raise ValueError(f"ONNX Runtime cannot quantize operator types {unknown} this way; "
                         f"known: {', '.join(sorted(registry))}")
    return operators


def float_nodes(graph: Path | onnx.ModelProto, layers: tuple[str, ...], option: str = "keep_float") -> list[str]:
    """The nodes of the layers an option names (by default those a quantizer must leave in float), in the graph it
    quantizes."""
    if not layers:
        return []
    model = onnx.load(graph, load_external_data=False) if isinstance(graph, Path) else graph
    return nodes_of_layers(model, layers, option)


def prepared(graph: onnx.ModelProto, directory: Path) -> Path:
    """Shape inference and graph optimization first, as ONNX Runtime recommends before quantizing.

    Symbolic shape inference is skipped where it gives up (TorchScript transformer exports). A graph already
    fused into ONNX Runtime's own operators (fuse.transformer) is taken as it is: symbolic shape inference
    stops at them, and there is nothing left for the pre-processor to fold.
    """
    path = directory / "prepared.onnx"
    if has_ort_fused_operators(graph):
        onnx.save(graph, path)
        return path
    with scratch_directory():
        try:
            quant_pre_process(graph, path)
        except Exception:  # symbolic shape inference gives up on some exports (TorchScript transformers): skip it
            quant_pre_process(graph, path, skip_symbolic_shape=True)
    return path
