"""Runtimes that run artifacts; `runtime_for` picks the one that runs a model's format."""

from __future__ import annotations

from tradeoff.model import ModelHandle
from tradeoff.runtimes.base import InferenceFn, Runtime
from tradeoff.runtimes.onnxruntime import OnnxRuntime
from tradeoff.runtimes.torch_eager import TorchEager

RUNTIMES: dict[str, type[Runtime]] = {r.name: r for r in (TorchEager, OnnxRuntime)}


def runtime_for(model: ModelHandle) -> Runtime:
    return next(cls() for cls in RUNTIMES.values() if cls.format == model.format and cls.available())


__all__ = ["RUNTIMES", "InferenceFn", "Runtime", "runtime_for"]
