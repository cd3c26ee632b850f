"""tradeoff: make a trained model cheaper to run, with the accuracy cost measured honestly."""

from tradeoff import data, training
from tradeoff.errors import ConfigError, DataError, ModelError, RuntimeBackendError, TradeoffError
from tradeoff.optimize import OptimizeResult, optimize
from tradeoff.recipe import Recipe

__all__ = ["ConfigError", "DataError", "ModelError", "OptimizeResult", "Recipe", "RuntimeBackendError",
           "TradeoffError", "data", "optimize", "training"]
__version__ = "0.1.0"
