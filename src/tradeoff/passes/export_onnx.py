"""export.onnx: torch module to an ONNX graph with a dynamic batch axis, checked against torch on real inputs."""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch.onnx._internal.exporter import _constants, _core, _registration

from tradeoff.errors import ModelError
from tradeoff.huggingface import record_transformer_facts, use_eager_attention
from tradeoff.inputs import as_tensors, input_names
from tradeoff.layers import name_weights_after_modules
from tradeoff.model import ModelHandle
from tradeoff.passes.base import Context, Pass, PassConfig, register
from tradeoff.runtimes.onnxruntime import OnnxRuntime


class ExportConfig(PassConfig):
    opset: int | None = None  # 18 for one input; 17 for transformers, whose fusions stop at opset-18 shapes
    atol: float = 1e-4
    rtol: float = 1e-3
    verify_samples: int = 64


@functools.cache
def _torchlib_registry(opset: int) -> _registration.ONNXRegistry:
    """The dynamo exporter's table of ~2,700 ATen-to-ONNX translations. torch.onnx.export(dynamo=True) builds it
    anew on every call and only reads it (exporting a 64-64-10 MLP: 0.7-1.1 s a call, 0.3 s with the table kept);
    a search exports a candidate per trial, so it is built once per process and handed to the exporter
    torch.onnx.export calls (torch's private `_core.export`, behind the torch pin: docs/NOTES.md trap 31)."""
    return _registration.ONNXRegistry.from_torchlib(opset_version=opset)


def _export(module: torch.nn.Module, sample: np.ndarray, opset: int | None) -> onnx.ModelProto:
    """One input: the dynamo exporter (torch's default and future). Named inputs (token ids and mask): the
    TorchScript exporter on eager attention, the graph ONNX Runtime's transformer optimizer knows how to fuse.
    Console chatter of both is silenced."""
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    names = input_names(sample)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not names:
            opset = opset or 18
            registry = _torchlib_registry(max(opset, _constants.TORCHLIB_OPSET))
            return _core.export(module, as_tensors(sample), registry=registry, opset_version=opset, verbose=False,
                                input_names=["input"], output_names=["output"],
                                dynamic_shapes=({0: torch.export.Dim("batch")},)).model_proto
        use_eager_attention(module)
        axes = {name: {0: "batch", 1: "sequence"} for name in names}
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.onnx"
            torch.onnx.export(module, as_tensors(sample), str(path), dynamo=False, opset_version=opset or 17,
                              input_names=list(names), output_names=["output"],
                              dynamic_axes={**axes, "output": {0: "batch"}})
            return onnx.load(str(path))


@register
class OnnxExport(Pass[ExportConfig]):
    name = "export.onnx"
    stage = "export"
    tags = frozenset({"export"})
    accepts = frozenset({"torch"})
    produces = "onnx"

    def transform(self, model: ModelHandle, ctx: Context) -> ModelHandle:
        config = self.config
        module = model.torch_module()
        inputs = ctx.data.val.x[: config.verify_samples]
        try:
            exported = _export(copy.deepcopy(module), inputs[:2], config.opset)
        except Exception as exc:  # the exporter raises many internal error types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"export.onnx could not export the model: {first}",
                             "export float torch models (before torch-side quantization)") from exc
        record_transformer_facts(exported, module)
        name_weights_after_modules(exported, module)
        handle = model.with_onnx(exported)
        with torch.inference_mode():
            expected = module(*as_tensors(inputs)).float().numpy()
        actual = OnnxRuntime().load(handle, ctx.threads)(inputs)
        if actual.shape != expected.shape or not np.allclose(actual, expected, rtol=config.rtol, atol=config.atol):
            gap = float(np.max(np.abs(actual - expected))) if actual.shape == expected.shape else float("inf")
            raise ModelError(f"export.onnx output differs from torch by up to {gap:.3g} on real inputs "
                             f"(atol {config.atol}, rtol {config.rtol})",
                             "the exported graph is not faithful; check for data-dependent control flow")
        return handle
