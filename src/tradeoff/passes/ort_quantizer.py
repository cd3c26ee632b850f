"""Plumbing the ONNX Runtime int8 passes share: pre-processing and silencing the quantizer's console output."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path

import onnx
from onnxruntime.quantization.shape_inference import quant_pre_process

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
