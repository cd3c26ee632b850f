"""Training loops that examples and recovery passes share."""

from tradeoff.training.trainer import TrainResult, fit, task_loss

__all__ = ["TrainResult", "fit", "task_loss"]
