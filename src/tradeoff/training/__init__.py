"""Training loops that examples and recovery passes share."""

from tradeoff.training.trainer import TrainResult, fit

__all__ = ["TrainResult", "fit"]
