"""The tools a user would pick instead of tradeoff to make a small torch model int8 for a CPU, each as its docs
show it and with its defaults: ONNX Runtime's quantize_dynamic and quantize_static (QDQ, MinMax calibration) on
the plain torch.onnx export after quant_pre_process, and NNCF's nncf.quantize on the OpenVINO model
ov.convert_model makes of that export, compiled with OpenVINO's default CPU configuration (latency hint; its
default inference precision, bf16 for float layers on CPUs that have it).

Calibration of both static peers: the first CALIBRATION_SAMPLES rows of the training split, one sample per batch,
as the ONNX Runtime and NNCF examples feed them.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnxruntime.quantization import CalibrationDataReader, quant_pre_process, quantize_dynamic, quantize_static

from tradeoff.data import DataBundle
from tradeoff.model import ModelHandle
from tradeoff.runtimes import InferenceFn, runtime_for
from tradeoff.runtimes.openvino import openvino_core

CALIBRATION_SAMPLES = 300  # nncf.quantize's default subset_size; ONNX Runtime's examples use a few hundred


@dataclass(frozen=True)
class SmallPeer:
    """One peer's int8 model: `graph` as its tool made it (an ONNX ModelProto or an OpenVINO Model), and how the
    tool's runtime runs it on `threads` threads."""

    name: str
    recipe: str  # the tool, its version and the configuration used
    runtime: str
    size_bytes: int
    graph: Any
    load: Callable[[int], InferenceFn]


def plain_export(module: torch.nn.Module, sample: np.ndarray, path: Path) -> Path:
    """torch.onnx.export as ONNX Runtime's quantization docs show it: one input, a dynamic batch axis."""
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.from_numpy(sample),), str(path), input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    return path


class _Samples(CalibrationDataReader):
    """ONNX Runtime's calibration reader over the calibration rows, one sample per call."""

    def __init__(self, samples: np.ndarray, input_name: str) -> None:
        self.feeds: Iterator[dict[str, np.ndarray]] = iter([{input_name: samples[i : i + 1]}
                                                           for i in range(len(samples))])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.feeds, None)


def _ort_peer(name: str, path: Path, configuration: str) -> SmallPeer:
    handle = ModelHandle(onnx_bytes=path.read_bytes(), runtime="onnxruntime")
    runtime = runtime_for(handle)
    return SmallPeer(name, f"onnxruntime {version('onnxruntime')}: {configuration}", "onnxruntime",
                     path.stat().st_size, handle.onnx_model(), lambda threads: runtime.load(handle, threads))


def ort_dynamic(prepared: Path, folder: Path) -> SmallPeer:
    quantize_dynamic(prepared, folder / "dynamic.onnx")
    return _ort_peer("ONNX Runtime quantize_dynamic", folder / "dynamic.onnx",
                     "quant_pre_process -> quantize_dynamic, defaults (QInt8 weights per tensor)")


def ort_static(prepared: Path, samples: np.ndarray, folder: Path) -> SmallPeer:
    reader = _Samples(samples, onnx.load(str(prepared)).graph.input[0].name)
    quantize_static(prepared, folder / "static.onnx", reader)
    return _ort_peer("ONNX Runtime quantize_static", folder / "static.onnx",
                     f"quant_pre_process -> quantize_static, defaults (QDQ, QInt8, MinMax on {len(samples)} "
                     "training samples)")


def openvino_nncf(exported: Path, samples: np.ndarray, folder: Path) -> SmallPeer:
    import nncf
    import openvino as ov

    nncf.set_log_level(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        quantized = nncf.quantize(ov.convert_model(exported), nncf.Dataset([samples[i : i + 1]
                                                                            for i in range(len(samples))]))
    ov.save_model(quantized, folder / "nncf.xml")  # its default: float weights compressed to fp16
    size = sum(p.stat().st_size for p in (folder / "nncf.xml", folder / "nncf.bin"))

    def load(threads: int) -> InferenceFn:
        compiled = openvino_core().compile_model(quantized, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                                    "PERFORMANCE_HINT": "LATENCY"})
        request = compiled.create_infer_request()
        return lambda batch: np.array(request.infer([batch])[0], dtype=np.float32)  # a copy: buffers are reused

    return SmallPeer("OpenVINO + NNCF int8", f"openvino {version('openvino')}, nncf {version('nncf')}: "
                     f"ov.convert_model -> nncf.quantize, defaults ({len(samples)} training samples); "
                     "CPU latency hint", "openvino", size, quantized, load)


def small_peers(model: ModelHandle, data: DataBundle) -> list[SmallPeer]:
    """The three peers' int8 models of the torch `model`, calibrated on `data`'s training split."""
    samples = data.train.x[:CALIBRATION_SAMPLES].astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        exported = plain_export(model.torch_module(), samples[:1], folder / "model.onnx")
        quant_pre_process(exported, folder / "prepared.onnx")
        return [ort_dynamic(folder / "prepared.onnx", folder), ort_static(folder / "prepared.onnx", samples, folder),
                openvino_nncf(exported, samples, folder)]
