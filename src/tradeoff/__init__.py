"""tradeoff: make a trained model cheaper to run, with the accuracy cost measured honestly.

The public names load on first use (PEP 562), so `import tradeoff` and `tradeoff --help` do not import torch,
optuna or onnx.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

from tradeoff.errors import ConfigError, DataError, ModelError, RuntimeBackendError, TradeoffError

if TYPE_CHECKING:
    from tradeoff import data, training
    from tradeoff.insight.explain import Explanation, explain
    from tradeoff.insight.monitor import MonitorResult, monitor
    from tradeoff.insight.sensitivity import Sensitivity, sensitivity
    from tradeoff.optimize import OptimizeResult, optimize
    from tradeoff.recipe import Recipe
    from tradeoff.replay import apply, evaluate
    from tradeoff.serving import Predictor, load
    from tradeoff.training.run import train
    from tradeoff.training.synthetic_data import distill_data
    from tradeoff.tuning.run import NasResult, TuneResult, nas, tune

# public name -> (module defining it, attribute; None: the name is that submodule)
_LAZY: dict[str, tuple[str, str | None]] = {
    "data": ("tradeoff.data", None), "training": ("tradeoff.training", None),
    "optimize": ("tradeoff.optimize", "optimize"), "OptimizeResult": ("tradeoff.optimize", "OptimizeResult"),
    "Recipe": ("tradeoff.recipe", "Recipe"), "apply": ("tradeoff.replay", "apply"),
    "evaluate": ("tradeoff.replay", "evaluate"), "train": ("tradeoff.training.run", "train"),
    "distill_data": ("tradeoff.training.synthetic_data", "distill_data"),
    "tune": ("tradeoff.tuning.run", "tune"), "TuneResult": ("tradeoff.tuning.run", "TuneResult"),
    "nas": ("tradeoff.tuning.run", "nas"), "NasResult": ("tradeoff.tuning.run", "NasResult"),
    "sensitivity": ("tradeoff.insight.sensitivity", "sensitivity"),
    "Sensitivity": ("tradeoff.insight.sensitivity", "Sensitivity"),
    "monitor": ("tradeoff.insight.monitor", "monitor"), "MonitorResult": ("tradeoff.insight.monitor", "MonitorResult"),
    "explain": ("tradeoff.insight.explain", "explain"), "Explanation": ("tradeoff.insight.explain", "Explanation"),
    "load": ("tradeoff.serving", "load"), "Predictor": ("tradeoff.serving", "Predictor"),
}

__all__ = ["ConfigError", "DataError", "Explanation", "ModelError", "MonitorResult", "NasResult", "OptimizeResult",
           "Predictor", "Recipe", "RuntimeBackendError", "Sensitivity", "TradeoffError", "TuneResult", "apply", "data",
           "distill_data", "evaluate", "explain", "load", "monitor", "nas", "optimize", "sensitivity", "train",
           "training", "tune"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'tradeoff' has no attribute '{name}'")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(ModuleType):
    """Importing the submodule tradeoff.optimize would set the package's `optimize` to that module; the public
    name stays the function (the module is in sys.modules for `from tradeoff.optimize import ...`)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, ModuleType) and _LAZY.get(name, ("", None))[1] is not None:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
