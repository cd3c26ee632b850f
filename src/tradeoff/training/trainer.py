"""The Trainer: tradeoff's supervised training loop, on its own (`tradeoff train`) and for passes that retrain.

It is torch's own pieces put in order (an optimizer and a schedule from torch.optim, clip_grad_norm_, autocast,
torch.utils.checkpoint, DistributedDataParallel under torchrun) plus what the field expects around them: early
stopping that restores the best weights, a per-epoch record, and a state written after every epoch from which a
killed run continues to the very weights an uninterrupted one reaches.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from tradeoff.config import TrainSpec
from tradeoff.data import DataBundle, Split
from tradeoff.errors import ConfigError, ModelError
from tradeoff.evaluation import predict
from tradeoff.inputs import as_tensors
from tradeoff.metrics import Metric
from tradeoff.runtimes import runtime_for
from tradeoff.training.distill import HiddenStateDistillation
from tradeoff.training.distributed import World, device_for, mean_over_processes, process_group, world
from tradeoff.training.gradient_checkpointing import gradient_checkpointing
from tradeoff.training.optim import optimizer_for, schedule_for
from tradeoff.training.resume import load_state, save_state
from tradeoff.validation import validate

if TYPE_CHECKING:
    from tradeoff.context import Context
    from tradeoff.model import ModelHandle

EVAL_CHUNK = 256  # samples per forward when the monitored split is scored
ExtraLoss = Callable[[np.ndarray, tuple[torch.Tensor, ...], torch.Tensor], torch.Tensor]  # batch, inputs, outputs


@dataclass(frozen=True)
class EpochRecord:
    """One epoch: the mean training loss, the loss (and the task's metric, when given) on the monitored split,
    the learning rate it ended at, the fraction of steps whose gradient was clipped, and its speed."""

    epoch: int
    train_loss: float
    monitor_loss: float
    monitor_metric: float | None
    lr: float
    clipped: float
    seconds: float
    samples_per_s: float


@dataclass(frozen=True)
class TrainResult:
    """`best_epoch` 0 means the starting weights were never beaten (and are the ones kept)."""

    epochs_run: int
    best_epoch: int
    stopped_early: bool
    best_value: float  # of the monitored quantity, at best_epoch
    history: tuple[EpochRecord, ...]


def task_loss(outputs: torch.Tensor, targets: torch.Tensor, classification: bool | None = None,
              label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy for classes (integer labels, or class probabilities after mixing), mean squared error for
    real-valued targets. `classification` None: integer targets are classes."""
    if classification is None:
        classification = not targets.is_floating_point()
    if classification:
        return nn.functional.cross_entropy(outputs.float(), targets, label_smoothing=label_smoothing)
    return nn.functional.mse_loss(outputs.float().reshape(targets.shape), targets)


def training_device() -> torch.device:
    """A CUDA GPU when torch sees one: fine-tuning and distillation are most of an optimization's time, and the
    artifacts and runtimes stay on the CPU, so only training moves."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def is_classification(split: Split) -> bool:
    return split.y.dtype.kind in "iub"


def _autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("train.precision fp16 needs a GPU (it relies on a gradient scaler and fp16 kernels)",
                          "use precision: bf16 on a CPU")
    return torch.autocast(device.type, dtype=torch.float16 if precision == "fp16" else torch.bfloat16)


def _set_dropout(module: nn.Module, p: float) -> None:
    layers = [m for m in module.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    if not layers:
        raise ConfigError(f"train.dropout is set but {type(module).__name__} has no nn.Dropout layer to set",
                          "give the model's factory a dropout argument, or leave train.dropout out")
    for layer in layers:
        layer.p = p


def _clip(parameters: list[nn.Parameter], spec: TrainSpec) -> bool:
    """Clip the gradients as the spec says; whether they needed it."""
    if spec.clip is None:
        return False
    if spec.clip.mode == "norm":
        return bool(nn.utils.clip_grad_norm_(parameters, spec.clip.max) > spec.clip.max)
    largest = max((float(p.grad.abs().max()) for p in parameters if p.grad is not None), default=0.0)
    nn.utils.clip_grad_value_(parameters, spec.clip.max)
    return largest > spec.clip.max


def _inputs(device: torch.device, x: np.ndarray) -> tuple[torch.Tensor, ...]:
    return tuple(t.to(device) for t in as_tensors(x))


def _on(device: torch.device, x: np.ndarray, y: np.ndarray) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    return _inputs(device, x), torch.from_numpy(y).to(device)


class _Monitor:
    """The quantity early stopping watches, turned so that lower is better."""

    def __init__(self, spec: TrainSpec, metric: Metric | None) -> None:
        self.by_metric = spec.early_stopping is not None and spec.early_stopping.monitor == "metric"
        if self.by_metric and metric is None:
            raise ConfigError("early_stopping.monitor is 'metric' but no metric was given", "pass metric=, or "
                              "monitor: loss")
        self.sign = -1.0 if self.by_metric and metric is not None and metric.higher_is_better else 1.0

    def value(self, loss: float, score: float | None) -> float:
        return self.sign * score if self.by_metric and score is not None else loss


@dataclass
class _Progress:
    """What a run has reached, all of it in the saved state."""

    epoch: int = 0
    best_value: float = math.inf
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)
    stale: int = 0
    stopped_early: bool = False
    history: list[EpochRecord] = field(default_factory=list)


class FinetuneOptions(Protocol):
    """What a pass's config says about its recovery step."""

    @property
    def finetune_epochs(self) -> int: ...

    @property
    def lr(self) -> float: ...


@dataclass(frozen=True)
class Trainer:
    """Trains a torch module in place as `options` say; the module comes back on the CPU, in eval mode."""

    options: TrainSpec = TrainSpec()
    device: str | None = None  # None: training_device()

    def fit(self, module: nn.Module, train: Split, monitor: Split, *, metric: Metric | None = None,
            checkpoint: Path | None = None, resume: bool = False, deadline: float | None = None,
            after_step: Callable[[], None] | None = None, on_epoch_start: Callable[[int], None] | None = None,
            on_epoch_end: Callable[[EpochRecord], None] | None = None, extra_loss: ExtraLoss | None = None,
            parameter_groups: list[dict[str, Any]] | None = None) -> TrainResult:
        """Train on `train`, judging each epoch on `monitor` (early stopping, best weights, the record).

        Where training starts counts as a candidate: training that only makes the monitored split worse is
        undone (with restore_best). `checkpoint`: the state file written after every epoch; with `resume` a run
        continues from it. No epoch starts after `deadline` (time.monotonic()). `after_step` runs after every
        optimizer step (passes re-apply masks there), `on_epoch_start(epoch)` before each epoch (gradual pruning),
        `on_epoch_end(record)` after it (a tuner's pruner may raise there), `extra_loss(batch, inputs, outputs)`
        adds a term to the training loss (distillation); early stopping judges the task loss alone.
        `parameter_groups` (torch's format, each with its own "lr") replaces one group of every parameter.
        """
        spec, here = self.options, world()
        device = device_for(torch.device(self.device) if self.device else training_device(), here)
        if spec.dropout is not None:
            _set_dropout(module, spec.dropout)
        _autocast(spec.precision, device)  # refuses fp16 on a CPU before any work
        module.to(device)
        try:
            with process_group(here, device), (gradient_checkpointing(module) if spec.gradient_checkpointing
                                               else contextlib.nullcontext()):
                run = _Run(self.options, module, train, monitor, metric, device, here, parameter_groups)
                return run.train(checkpoint, resume, deadline, after_step, on_epoch_start, on_epoch_end, extra_loss)
        finally:
            module.to("cpu")
            module.eval()

    def train(self, module: nn.Module, data: DataBundle, *, metric: Metric | None = None,
              **hooks: Any) -> TrainResult:
        """Train on a data bundle: early stopping watches the seeded holdout of train, or validation where
        `early_stopping.split` says so; without early stopping all of train is trained on and validation is
        recorded."""
        stopping = self.options.early_stopping
        train, monitor = data.train_holdout() if stopping is not None and stopping.split == "holdout" else \
            (data.train, data.val)
        return self.fit(module, train, monitor, metric=metric, **hooks)

    def finetune(self, module: nn.Module, ctx: Context, options: FinetuneOptions,
                 after_step: Callable[[], None] | None = None, hidden_state_weight: float = 0.0,
                 distillation: contextlib.AbstractContextManager[ExtraLoss] | None = None,
                 on_epoch_start: Callable[[int], None] | None = None,
                 parameter_groups: list[dict[str, Any]] | None = None) -> TrainResult | None:
        """Recover accuracy on the training split in place, for `options.finetune_epochs` at `options.lr`; None
        for 0 epochs.

        Early stopping watches a seeded tenth of the training split, never the validation split: the search
        decides on validation, so a candidate must not have been tuned against it. Without early stopping nothing
        decides on that tenth, so it is trained on too (and only watched). Without labels (embeddings)
        the module learns the teacher's outputs. A positive `hidden_state_weight` adds the distance of every
        encoder layer's hidden states to the teacher's; `distillation` (entered for the run) another loss term.
        `on_epoch_start` and `parameter_groups` as in `fit` (transfer learning unfreezes layers there).
        """
        epochs = options.finetune_epochs
        if not epochs:
            return None
        train, holdout = ctx.data.train_holdout()
        if self.options.early_stopping is None:
            train = ctx.data.train
        if not ctx.data.labelled:
            train, holdout = self.with_teacher_targets(ctx, train), self.with_teacher_targets(ctx, holdout)
        spec = self.options.model_copy(update={"epochs": epochs, "lr": options.lr, "seed": ctx.seed,
                                               "warmup_epochs": 0.0})
        if hidden_state_weight > 0:
            teacher = require_teacher(ctx, "distilling hidden states").torch_module()
            distillation = HiddenStateDistillation(module, teacher, hidden_state_weight)

        def report(epoch: int) -> None:
            if on_epoch_start is not None:
                on_epoch_start(epoch)
            if ctx.progress is not None:
                ctx.progress(f"fine-tuning: epoch {epoch}/{epochs}")

        with distillation or contextlib.nullcontext() as extra_loss:
            return replace(self, options=spec, device=ctx.device).fit(
                module, train, holdout, metric=None, deadline=ctx.deadline, after_step=after_step,
                on_epoch_start=report, extra_loss=extra_loss, parameter_groups=parameter_groups)

    def teacher_outputs(self, ctx: Context, split: Split, purpose: str) -> np.ndarray:
        teacher = require_teacher(ctx, purpose)
        key = (id(teacher), hashlib.sha256(split.x.tobytes()).hexdigest())
        if key not in ctx.teacher_outputs:
            outputs = predict(runtime_for(teacher).load(teacher, ctx.threads), split)
            ctx.teacher_outputs[key] = outputs.astype(np.float32)
        return ctx.teacher_outputs[key]

    def with_teacher_targets(self, ctx: Context, split: Split) -> Split:
        """The split with the teacher's outputs as regression targets: distillation through the same loop."""
        return Split(split.x, self.teacher_outputs(ctx, split, "fine-tuning on unlabelled data"))


class _Run:
    """One training run's moving parts; `train` is the epoch loop."""

    def __init__(self, spec: TrainSpec, module: nn.Module, train: Split, monitor: Split, metric: Metric | None,
                 device: torch.device, here: World, parameter_groups: list[dict[str, Any]] | None) -> None:
        self.spec, self.module, self.train_split, self.monitor_split = spec, module, train, monitor
        self.metric, self.device, self.here = metric, device, here
        self.classification = is_classification(train)
        self.monitor = _Monitor(spec, metric)
        self.wrapped: nn.Module = module if here.size == 1 else DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None)
        if spec.batch_size < here.size:
            raise ConfigError(f"train.batch_size {spec.batch_size} is smaller than the {here.size} processes that "
                              "share each batch", f"set batch_size to {here.size} or more")
        self.batch_size = spec.batch_size // here.size  # the global batch stays batch_size
        self.shard = len(train) - len(train) % here.size
        self.steps_per_epoch = math.ceil(self.shard // here.size / self.batch_size)
        torch.manual_seed(spec.seed)
        self.generator = torch.Generator().manual_seed(spec.seed)
        # every parameter, frozen ones too: a schedule may unfreeze them (they get no gradient until then)
        self.parameters = list(module.parameters())
        self.optimizer = optimizer_for(parameter_groups or self.parameters, spec)
        self.schedule = schedule_for(self.optimizer, spec, self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler(device.type, enabled=spec.precision == "fp16")
        self.augmentation = self._augmentation()

    def _augmentation(self) -> Callable[..., tuple[tuple[torch.Tensor, ...], torch.Tensor]] | None:
        if self.spec.augment is None:
            return None
        from tradeoff.training.augment import Augmentation

        classes = None
        if self.classification:  # the model's output width, which may exceed the labels this data set uses
            self.module.eval()
            with torch.inference_mode():
                classes = int(self.module(*_inputs(self.device, self.train_split.x[:1])).shape[-1])
        return Augmentation(self.spec.augment, tuple(self.train_split.x.shape[1:]), classes)

    def train(self, checkpoint: Path | None, resume: bool, deadline: float | None,
              after_step: Callable[[], None] | None, on_epoch_start: Callable[[int], None] | None,
              on_epoch_end: Callable[[EpochRecord], None] | None, extra_loss: ExtraLoss | None) -> TrainResult:
        options = self.spec.model_dump(mode="json")
        if resume and checkpoint is not None and checkpoint.exists():
            progress = self._restore(load_state(checkpoint, options))
        else:
            loss, score = self._judge()
            progress = _Progress(best_value=self.monitor.value(loss, score), best_state=self._state_copy())
        stopping = self.spec.early_stopping
        while not progress.stopped_early and progress.epoch < self.spec.epochs:
            if deadline is not None and time.monotonic() > deadline:
                break
            progress.epoch += 1
            if on_epoch_start is not None:
                on_epoch_start(progress.epoch)
            record = self._epoch(progress.epoch, after_step, extra_loss)
            progress.history.append(record)
            value = self.monitor.value(record.monitor_loss, record.monitor_metric)
            if value < progress.best_value - (stopping.min_delta if stopping is not None else 0.0):
                progress.best_value, progress.best_epoch, progress.stale = value, progress.epoch, 0
                progress.best_state = self._state_copy()
            else:
                progress.stale += 1
                progress.stopped_early = stopping is not None and progress.stale >= stopping.patience
            if checkpoint is not None and self.here.main:
                save_state(checkpoint, self._saved(progress, options))
            if on_epoch_end is not None:
                on_epoch_end(record)
        if stopping is not None and stopping.restore_best:
            self.module.load_state_dict(progress.best_state)
        return TrainResult(progress.epoch, progress.best_epoch, progress.stopped_early,
                           self.monitor.sign * progress.best_value, tuple(progress.history))

    def _state_copy(self) -> dict[str, torch.Tensor]:
        return copy.deepcopy(self.module.state_dict())

    def _batches(self) -> Iterator[np.ndarray]:
        order = torch.randperm(len(self.train_split), generator=self.generator)[: self.shard]
        yield from (rows.numpy() for rows in order[self.here.rank :: self.here.size].split(self.batch_size))

    def _epoch(self, epoch: int, after_step: Callable[[], None] | None,
               extra_loss: ExtraLoss | None) -> EpochRecord:
        start, losses, clipped, seen = time.perf_counter(), [], 0, 0
        self.wrapped.train()
        for rows in self._batches():
            inputs, targets = _on(self.device, self.train_split.x[rows], self.train_split.y[rows])
            if self.augmentation is not None:
                inputs, targets = self.augmentation(inputs, targets, self.generator)
            self.optimizer.zero_grad(set_to_none=True)
            with _autocast(self.spec.precision, self.device):
                outputs = self.wrapped(*inputs)
                loss = task_loss(outputs, targets, self.classification, self.spec.label_smoothing)
                if extra_loss is not None:
                    loss = loss + extra_loss(self.train_split.x[rows], inputs, outputs)
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            clipped += _clip(self.parameters, self.spec)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.schedule.step()
            if after_step is not None:
                after_step()
            losses.append(float(loss.detach()))
            seen += len(rows)
        seconds = time.perf_counter() - start
        monitor_loss, score = self._judge()
        return EpochRecord(epoch, mean_over_processes(float(np.mean(losses)) if losses else math.nan, self.here),
                           monitor_loss, score, float(self.optimizer.param_groups[0]["lr"]),
                           clipped / max(1, len(losses)), seconds, seen * self.here.size / seconds)

    def _judge(self) -> tuple[float, float | None]:
        """The task loss and the metric on the monitored split. Every process scores the whole split with the same
        weights, so they all reach the same early-stopping decision without a word between them."""
        self.module.eval()
        split = self.monitor_split
        with torch.inference_mode():
            outputs = torch.cat([self.module(*_inputs(self.device, split.x[i : i + EVAL_CHUNK])).float().cpu()
                                 for i in range(0, len(split), EVAL_CHUNK)])
        loss = float(task_loss(outputs, torch.from_numpy(split.y), self.classification))
        score = None if self.metric is None else self.metric(outputs.numpy(), split.y, split.y)
        return loss, score

    def _saved(self, progress: _Progress, options: dict[str, Any]) -> dict[str, Any]:
        return {"options": options, "epoch": progress.epoch, "model": self.module.state_dict(),
                "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
                "scaler": self.scaler.state_dict(), "best_value": progress.best_value,
                "best_epoch": progress.best_epoch, "best_state": progress.best_state, "stale": progress.stale,
                "stopped_early": progress.stopped_early, "history": [asdict(r) for r in progress.history],
                "generator": self.generator.get_state(), "rng": torch.get_rng_state()}

    def _restore(self, state: dict[str, Any]) -> _Progress:
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["rng"])
        return _Progress(state["epoch"], state["best_value"], state["best_epoch"], state["best_state"],
                         state["stale"], state["stopped_early"], [EpochRecord(**r) for r in state["history"]])


def fit(module: nn.Module, train: Split, monitor: Split, *, metric: Metric | None = None,
        device: str | None = None, **options: Any) -> TrainResult:
    """Train `module` in place on `train`, early-stopping on `monitor`; `options` are TrainSpec fields
    (`fit(model, train, holdout, epochs=20, lr=3e-3)`). Hooks and resume: `Trainer(...).fit`."""
    return Trainer(validate(TrainSpec, options, "fit()"), device).fit(module, train, monitor, metric=metric)


def require_teacher(ctx: Context, purpose: str) -> ModelHandle:
    if ctx.teacher is None:
        raise ModelError(f"{purpose} needs the original model as teacher", "pass Context(teacher=the original model)")
    return ctx.teacher
