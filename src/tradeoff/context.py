"""What a pass may use besides its input model, handed to it as plain data: passes never reach for globals."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from tradeoff.data import DataBundle
from tradeoff.metrics import Metric
from tradeoff.model import ModelHandle
from tradeoff.training.trainer import Trainer, training_device


@dataclass(frozen=True)
class Context:
    """The data, the original model as teacher, the task's metric and the trainer that recovers accuracy.

    `deadline` (time.monotonic()) is when the run's time budget ends: training stops at the next epoch past it.
    `progress` receives short status lines ("fine-tuning: epoch 2/3") for the caller's progress bar.
    `on_epoch(epoch, values)`, set by the study for each trial, takes what a candidate that trains measured after
    each epoch (the validation metric, and what was known before training); it raises to stop a hopeless trial.
    """

    data: DataBundle
    seed: int = 0
    threads: int = 1
    device: str = field(default_factory=lambda: training_device().type)  # where training runs
    deadline: float | None = None
    progress: Callable[[str], None] | None = None
    teacher: ModelHandle | None = None
    metric: Metric | None = None  # the task's metric, for passes that check it while they work
    trainer: Trainer = field(default_factory=Trainer)
    on_epoch: Callable[[int, Mapping[str, float | None]], None] | None = None
    # the teacher's outputs on the rows it has run on, by teacher and rows: every candidate of a run that distills
    # learns the same targets, computed once (MiniLM on 12,000 texts: ten minutes on two cores)
    teacher_outputs: dict[tuple[int, str], np.ndarray] = field(default_factory=dict, repr=False, compare=False)
