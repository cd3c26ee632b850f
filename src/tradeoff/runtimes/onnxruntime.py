"""ONNX Runtime, with the GPU providers first when this machine has them (TensorRT, then CUDA, then CPU).

ONNX Runtime hands each node to the first provider in the list that can run it, so a TensorRT or CUDA build
still runs what those cannot on the CPU. TensorRT compiles an engine per model and input shape, minutes for a
transformer, so its engines are cached on disk and a search or a re-run builds each one once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from tradeoff.errors import RuntimeBackendError
from tradeoff.inputs import as_feeds
from tradeoff.model import ModelHandle
from tradeoff.runtimes.base import InferenceFn, Runtime
from tradeoff.runtimes.precision import inference_precision

TENSORRT_CACHE = Path.home() / ".cache" / "tradeoff" / "tensorrt"


def providers(available: list[str] | None = None) -> list[str | tuple[str, dict[str, str]]]:
    """The providers a session asks for, best first, among those this ONNX Runtime build has."""
    available = ort.get_available_providers() if available is None else available
    chosen: list[str | tuple[str, dict[str, str]]] = []
    if "TensorrtExecutionProvider" in available:
        chosen.append(("TensorrtExecutionProvider", {"trt_engine_cache_enable": "True",
                                                     "trt_engine_cache_path": str(TENSORRT_CACHE)}))
    chosen += [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    return chosen


def create_session(onnx_bytes: bytes, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(onnx_bytes, sess_options=options, providers=providers())
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
        raise RuntimeBackendError(f"ONNX Runtime cannot load the model: {str(exc).splitlines()[0]}") from None


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    format = "onnx"

    def load(self, model: ModelHandle, threads: int) -> InferenceFn:
        if model.onnx_bytes is None:
            raise ValueError("OnnxRuntime runs ONNX models only")
        session = create_session(model.onnx_bytes, threads)
        if inference_precision(session.get_modelmeta().custom_metadata_map) != "f32":
            raise RuntimeBackendError("this artifact asks for bf16 inference, which ONNX Runtime's CPU provider does "
                                      "not run", "run it on openvino (runtime: {target: openvino} or auto)")
        names = [i.name for i in session.get_inputs()]
        float_type = np.float16 if session.get_inputs()[0].type == "tensor(float16)" else np.float32

        def run(batch: np.ndarray) -> np.ndarray:
            output = session.run(None, as_feeds(batch, names, float_type))[0]
            return np.asarray(output, dtype=np.float32)

        return run
