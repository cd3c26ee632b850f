"""Runtimes that run artifacts; `runtime_for` picks the one an artifact was tuned for, else its format's first."""

from __future__ import annotations

from tradeoff.errors import RuntimeBackendError
from tradeoff.model import Format, ModelHandle
from tradeoff.runtimes.base import InferenceFn, Runtime
from tradeoff.runtimes.onnxruntime import OnnxRuntime
from tradeoff.runtimes.openvino import OpenVino
from tradeoff.runtimes.torch_compile import TorchCompile
from tradeoff.runtimes.torch_eager import TorchCuda, TorchEager

RUNTIMES: dict[str, type[Runtime]] = {r.name: r for r in (TorchEager, TorchCuda, TorchCompile, OnnxRuntime, OpenVino)}


def runtimes_for(format: Format, auto_only: bool = False) -> list[str]:
    """The runtimes installed here that run `format`, the default first (only those auto tries, if asked)."""
    return [name for name, cls in RUNTIMES.items()
            if cls.format == format and cls.available() and (cls.in_auto or not auto_only)]


def runtime_for(model: ModelHandle) -> Runtime:
    if model.runtime is None:
        return RUNTIMES[runtimes_for(model.format)[0]]()
    cls = RUNTIMES.get(model.runtime)
    if cls is None or cls.format != model.format:
        raise RuntimeBackendError(f"runtime '{model.runtime}' cannot run a {model.format} model",
                                  f"use one of {', '.join(runtimes_for(model.format))}")
    if not cls.available():
        raise RuntimeBackendError(f"this model was tuned for {model.runtime}, which needs {cls.needs}",
                                  "run it where that is, or replay the recipe with another runtime")
    return cls()


__all__ = ["RUNTIMES", "InferenceFn", "Runtime", "runtime_for", "runtimes_for"]
