"""ONNX Runtime, with the CUDA provider first when this machine has one."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from tradeoff.errors import RuntimeBackendError
from tradeoff.inputs import as_arrays, input_names
from tradeoff.model import ModelHandle
from tradeoff.runtimes.base import InferenceFn, Runtime


def providers() -> list[str]:
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


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
        graph_inputs = session.get_inputs()
        float_type = np.float16 if graph_inputs[0].type == "tensor(float16)" else np.float32

        def run(batch: np.ndarray) -> np.ndarray:
            output = session.run(None, feeds(batch))[0]
            return np.asarray(output, dtype=np.float32)

        def feeds(batch: np.ndarray) -> dict[str, np.ndarray]:
            names = input_names(batch)
            if not names:  # one float input, cast to the graph's float type (fp16 graphs take fp16)
                return {graph_inputs[0].name: np.ascontiguousarray(batch, dtype=float_type)}
            arrays = dict(zip(names, as_arrays(batch), strict=True))
            missing = [i.name for i in graph_inputs if i.name not in arrays]
            if missing:
                raise RuntimeBackendError(f"the ONNX model needs inputs {missing} that the data does not carry",
                                          f"the data carries {list(names)}")
            return {i.name: arrays[i.name] for i in graph_inputs}

        return run
