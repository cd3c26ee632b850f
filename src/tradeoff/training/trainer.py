"""A small supervised training loop with early stopping on validation loss, and the Trainer passes are handed."""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from torch import nn

from tradeoff.data import Split
from tradeoff.errors import ModelError
from tradeoff.evaluation import predict
from tradeoff.inputs import as_tensors
from tradeoff.runtimes import runtime_for
from tradeoff.training.distill import HiddenStateDistillation

if TYPE_CHECKING:
    from tradeoff.context import Context
    from tradeoff.model import ModelHandle


@dataclass(frozen=True)
class TrainResult:
    epochs_run: int
    best_val_loss: float


def task_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for class labels, mean squared error for real-valued targets."""
    if not targets.is_floating_point():
        return nn.functional.cross_entropy(outputs, targets)
    return nn.functional.mse_loss(outputs.reshape(targets.shape), targets)


def training_device() -> torch.device:
    """A CUDA GPU when torch sees one: fine-tuning and distillation are most of an optimization's time, and the
    artifacts and runtimes stay on the CPU, so only training moves."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _on(device: torch.device, x: np.ndarray, y: np.ndarray) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    return tuple(t.to(device) for t in as_tensors(x)), torch.from_numpy(y).to(device)


def _val_loss(module: nn.Module, split: Split, device: torch.device) -> float:
    module.eval()
    with torch.inference_mode():
        inputs, targets = _on(device, split.x, split.y)
        return float(task_loss(module(*inputs), targets))


def fit(module: nn.Module, train: Split, val: Split, epochs: int = 20, lr: float = 1e-3, batch_size: int = 64,
        patience: int = 3, max_grad_norm: float | None = 5.0, seed: int = 0,
        after_step: Callable[[], None] | None = None, on_epoch: Callable[[int], None] | None = None,
        extra_loss: Callable[[np.ndarray, tuple[torch.Tensor, ...]], torch.Tensor] | None = None,
        device: torch.device | str | None = None, deadline: float | None = None) -> TrainResult:
    """Train `module` in place with Adam; keep the weights with the lowest validation loss (the starting
    weights included).

    `after_step` runs after every optimizer step (compression passes re-apply masks or shared weights there);
    `on_epoch(epoch)` runs before each epoch (gradual pruning raises sparsity there); `extra_loss(batch, inputs)`,
    called after each training forward, adds a term to the task loss (hidden-state distillation); early stopping
    still judges the task loss alone. Training runs on `device` (default `training_device()`); the module comes
    back on the CPU. No epoch starts after `deadline` (time.monotonic()).
    """
    device = torch.device(device) if device is not None else training_device()
    module.to(device)
    try:
        generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        optimizer = torch.optim.Adam(module.parameters(), lr=lr)
        # Where training starts counts as a candidate: tuning that only makes the holdout worse is undone.
        best_loss, best_state, stale, epoch = _val_loss(module, val, device), copy.deepcopy(module.state_dict()), 0, 0
        for epoch in range(1, epochs + 1):  # noqa: B007 - the last epoch run is reported after the loop
            if deadline is not None and time.monotonic() > deadline:
                epoch -= 1
                break
            if on_epoch is not None:
                on_epoch(epoch)
            module.train()
            for batch in torch.randperm(len(train), generator=generator).split(batch_size):
                rows = batch.numpy()
                optimizer.zero_grad()
                inputs, targets = _on(device, train.x[rows], train.y[rows])
                loss = task_loss(module(*inputs), targets)
                if extra_loss is not None:
                    loss = loss + extra_loss(train.x[rows], inputs)
                loss.backward()
                if max_grad_norm is not None:
                    nn.utils.clip_grad_norm_(module.parameters(), max_grad_norm)
                optimizer.step()
                if after_step is not None:
                    after_step()
            val_loss = _val_loss(module, val, device)
            if val_loss < best_loss:
                best_loss, best_state, stale = val_loss, copy.deepcopy(module.state_dict()), 0
            else:
                stale += 1
                if stale >= patience:
                    break
        module.load_state_dict(best_state)
        module.eval()
    finally:
        module.to("cpu")
    return TrainResult(epochs_run=epoch, best_val_loss=best_loss)


class FinetuneOptions(Protocol):
    """What a pass's config says about its recovery step."""

    @property
    def finetune_epochs(self) -> int: ...

    @property
    def lr(self) -> float: ...


@dataclass(frozen=True)
class Trainer:
    """How passes that damage accuracy (pruning, sharing, QAT) recover it, handed to them in the Context."""

    batch_size: int = 64
    max_grad_norm: float | None = 5.0

    def finetune(self, module: nn.Module, ctx: Context, options: FinetuneOptions,
                 after_step: Callable[[], None] | None = None, hidden_state_weight: float = 0.0) -> TrainResult | None:
        """Recover accuracy on the training split in place; None for 0 epochs.

        Early stopping watches a seeded tenth of the training split, never the validation split: the search
        decides on validation, so a candidate must not have been tuned against it. Without labels (embeddings)
        the module learns the teacher's outputs. A positive `hidden_state_weight` adds the distance of every
        encoder layer's hidden states to the teacher's.
        """
        epochs = options.finetune_epochs
        if not epochs:
            return None
        train, holdout = ctx.data.train_holdout()
        if not ctx.data.labelled:
            train, holdout = self.with_teacher_targets(ctx, train), self.with_teacher_targets(ctx, holdout)
        distillation: contextlib.AbstractContextManager[HiddenStateDistillation | None] = contextlib.nullcontext()
        if hidden_state_weight > 0:
            teacher = _require_teacher(ctx, "distilling hidden states").torch_module()
            distillation = HiddenStateDistillation(module, teacher, hidden_state_weight)

        def report(epoch: int) -> None:
            if ctx.progress is not None:
                ctx.progress(f"fine-tuning: epoch {epoch}/{epochs}")

        with distillation as extra_loss:
            return fit(module, train, holdout, epochs=epochs, lr=options.lr, batch_size=self.batch_size,
                       patience=epochs, max_grad_norm=self.max_grad_norm, seed=ctx.seed, after_step=after_step,
                       on_epoch=report, extra_loss=extra_loss, device=ctx.device, deadline=ctx.deadline)

    def teacher_outputs(self, ctx: Context, split: Split, purpose: str) -> np.ndarray:
        teacher = _require_teacher(ctx, purpose)
        return predict(runtime_for(teacher).load(teacher, ctx.threads), split).astype(np.float32)

    def with_teacher_targets(self, ctx: Context, split: Split) -> Split:
        """The split with the teacher's outputs as regression targets: distillation through the same loop."""
        return Split(split.x, self.teacher_outputs(ctx, split, "fine-tuning on unlabelled data"))


def _require_teacher(ctx: Context, purpose: str) -> ModelHandle:
    if ctx.teacher is None:
        raise ModelError(f"{purpose} needs the original model as teacher", "pass Context(teacher=the original model)")
    return ctx.teacher
