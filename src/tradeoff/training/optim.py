"""The optimizer and the learning-rate schedule a TrainSpec names, built from torch's own classes.

Schedules advance once per optimizer step, so a warm-up of half an epoch means half an epoch's steps.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.optim import lr_scheduler

from tradeoff.config import TrainSpec

WARMUP_START = 0.01  # the warm-up starts at this fraction of the learning rate


def optimizer_for(parameters: Iterable[torch.nn.Parameter] | list[dict[str, Any]],
                  spec: TrainSpec) -> torch.optim.Optimizer:
    """`parameters` may be torch's parameter groups, each with its own learning rate."""
    if spec.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
    kind = torch.optim.AdamW if spec.optimizer == "adamw" else torch.optim.Adam
    return kind(parameters, lr=spec.lr, weight_decay=spec.weight_decay)


def schedule_for(optimizer: torch.optim.Optimizer, spec: TrainSpec, steps_per_epoch: int) -> lr_scheduler.LRScheduler:
    total = spec.epochs * steps_per_epoch
    if spec.schedule == "onecycle":
        return lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total)
    warmup = round(spec.warmup_epochs * steps_per_epoch)
    remaining = max(1, total - warmup)
    main: lr_scheduler.LRScheduler
    if spec.schedule == "cosine":
        main = lr_scheduler.CosineAnnealingLR(optimizer, T_max=remaining)
    elif spec.schedule == "linear":
        main = lr_scheduler.LinearLR(optimizer, start_factor=1.0, end_factor=0.0, total_iters=remaining)
    else:
        main = lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    if not warmup:
        return main
    ramp = lr_scheduler.LinearLR(optimizer, start_factor=WARMUP_START, end_factor=1.0, total_iters=warmup)
    return lr_scheduler.SequentialLR(optimizer, [ramp, main], milestones=[warmup])
