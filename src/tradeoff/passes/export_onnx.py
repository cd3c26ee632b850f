"""export.onnx: torch module to an ONNX graph with a dynamic batch axis, checked against torch on real inputs."""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from tradeoff.errors import ModelError
from tradeoff.model import ModelHandle
from tradeoff.passes.base import Context, Pass, PassConfig, register
from tradeoff.runtimes.onnxruntime import OnnxRuntime


class ExportConfig(PassConfig):
    opset: int = 18
    atol: float = 1e-4
    rtol: float = 1e-3
    verify_samples: int = 64


def _export(module: torch.nn.Module, sample: torch.Tensor, opset: int) -> onnx.ModelProto:
    """The dynamo exporter (torch's default and future); its console chatter is silenced."""
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    batch = torch.export.Dim("batch")
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(tmp) / "model.onnx"
        torch.onnx.export(module, (sample,), str(path), dynamo=True, opset_version=opset, verbose=False,
                          input_names=["input"], output_names=["output"], dynamic_shapes=({0: batch},))
        return onnx.load(str(path))


@register
class OnnxExport(Pass):
    name = "export.onnx"
    Config = ExportConfig
    accepts = frozenset({"torch"})

    def apply(self, model: ModelHandle, ctx: Context) -> ModelHandle:
        self.check_input(model)
        config: ExportConfig = self.config  # type: ignore[assignment]
        module = model.torch_module()
        inputs = ctx.data.val.x[: config.verify_samples]
        try:
            exported = _export(module, torch.from_numpy(inputs[:2]), config.opset)
        except Exception as exc:  # the exporter raises many internal error types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"export.onnx could not export the model: {first}",
                             "export float torch models (before torch-side quantization)") from exc
        handle = model.with_onnx(exported)
        with torch.inference_mode():
            expected = module(torch.from_numpy(inputs)).float().numpy()
        actual = OnnxRuntime().load(handle, ctx.threads)(inputs)
        if actual.shape != expected.shape or not np.allclose(actual, expected, rtol=config.rtol, atol=config.atol):
            gap = float(np.max(np.abs(actual - expected))) if actual.shape == expected.shape else float("inf")
            raise ModelError(f"export.onnx output differs from torch by up to {gap:.3g} on real inputs "
                             f"(atol {config.atol}, rtol {config.rtol})",
                             "the exported graph is not faithful; check for data-dependent control flow")
        return handle
