"""OpenVINO on the CPU, when the optional `openvino` package is installed.

It runs the same ONNX artifacts as ONNX Runtime; on Intel and AVX-512 CPUs its int8 kernels (for the QDQ graphs
quantize.nncf writes) are often the fastest. Inference precision is pinned to f32 unless the artifact asks for bf16
(quantize.bf16): OpenVINO would otherwise run float layers in bf16 on CPUs that have it, and the fidelity measured
would not be the one that ships.

One `ov.Core` serves the whole process: OpenVINO's CPU plugin segfaults after many models were compiled through
Cores created one after another (seen in this suite's CI on an Intel AMX VM, and by ultralytics, whose fix was the
same), and its documentation recommends one Core per application.
"""

from __future__ import annotations

import importlib.util
import tempfile
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from tradeoff.errors import RuntimeBackendError
from tradeoff.inputs import as_feeds
from tradeoff.model import ModelHandle
from tradeoff.runtimes.base import InferenceFn, Runtime
from tradeoff.runtimes.precision import PRECISION_KEY, inference_precision


def _reason(exc: RuntimeError) -> str:
    """What OpenVINO's multi-line error says, without the source locations it starts with: the summary of the
    operators it could not convert where there is one, else its last line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if "Summary:" in lines:
        return "; ".join(line.removeprefix("-- ") for line in lines[lines.index("Summary:") + 1:])
    return lines[-1] if lines else type(exc).__name__


@cache
def openvino_core() -> Any:
    import openvino as ov

    return ov.Core()


def compile_onnx(onnx_bytes: bytes, threads: int) -> Any:
    core = openvino_core()
    with tempfile.TemporaryDirectory() as tmp:  # OpenVINO reads ONNX from a file; the compiled model keeps it
        path = Path(tmp) / "model.onnx"
        path.write_bytes(onnx_bytes)
        try:
            model = core.read_model(str(path))
            metadata = ["framework", PRECISION_KEY]  # where OpenVINO keeps an ONNX graph's metadata
            precision = inference_precision({PRECISION_KEY: model.get_rt_info(metadata).astype(str)}
                                            if model.has_rt_info(metadata) else {})
            config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                      "INFERENCE_PRECISION_HINT": precision}
            return core.compile_model(model, "CPU", config)
        except RuntimeError as exc:
            raise RuntimeBackendError(f"OpenVINO cannot compile the model: {_reason(exc)}",
                                      "run it on onnxruntime instead (runtime: {target: onnxruntime})") from None


class OpenVino(Runtime):
    name = "openvino"
    format = "onnx"
    needs: ClassVar[str] = "the openvino package (pip install 'tradeoff[openvino]')"

    @classmethod
    def available(cls) -> bool:
        return importlib.util.find_spec("openvino") is not None

    def load(self, model: ModelHandle, threads: int) -> InferenceFn:
        if model.onnx_bytes is None:
            raise ValueError("OpenVINO runs ONNX models only")
        compiled = compile_onnx(model.onnx_bytes, threads)
        request = compiled.create_infer_request()
        graph_inputs = [port.get_any_name() for port in compiled.inputs]

        def run(batch: np.ndarray) -> np.ndarray:
            outputs = request.infer(as_feeds(batch, graph_inputs))
            return np.array(outputs[0], dtype=np.float32)  # a copy: the request reuses its buffer

        return run
