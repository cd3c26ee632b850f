"""The Trainer and what it trains with: distillation losses, augmentation, data-parallel processes."""

from tradeoff.training.distill import HiddenStateDistillation
from tradeoff.training.trainer import EpochRecord, Trainer, TrainResult, fit, task_loss

__all__ = ["EpochRecord", "HiddenStateDistillation", "TrainResult", "Trainer", "fit", "task_loss"]
