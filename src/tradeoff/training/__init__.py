"""Training loops that examples and recovery passes share."""

from tradeoff.training.distill import HiddenStateDistillation
from tradeoff.training.trainer import Trainer, TrainResult, fit, task_loss

__all__ = ["HiddenStateDistillation", "TrainResult", "Trainer", "fit", "task_loss"]
