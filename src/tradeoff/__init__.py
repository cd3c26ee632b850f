"""tradeoff: make a trained model cheaper to run, with the accuracy cost measured honestly."""

from tradeoff import data, training
from tradeoff.errors import ConfigError, DataError, ModelError, RuntimeBackendError, TradeoffError

__all__ = ["ConfigError", "DataError", "ModelError", "RuntimeBackendError", "TradeoffError", "data", "training"]
__version__ = "0.1.0"
