"""`tradeoff distill-data` and `to.distill_data`: a distilled training set written as files the data section reads,
and the accuracy of a model trained on it alone.

Only the task's training split is distilled. The synthetic set replaces the training split and nothing else, so the
task's validation and test splits are written beside it, as loaded (reshaped, standardized): a task trains on the
synthetic set with `data: {source: file, train: DIR/synthetic.npz, val: DIR/val.npz, test: DIR/test.npz}`.
The judge is the papers' own: a fresh ConvNet (an MLP for vectors) trained on the synthetic set alone for a fixed
number of steps, without early stopping (a holdout of a few images would judge nothing), scored once on test.
"""

from __future__ import annotations

import contextlib
import io
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from torch import nn

from tradeoff.config import AugmentSpec, Task, TrainSpec, load_task
from tradeoff.data import Split, load_data
from tradeoff.errors import DataError
from tradeoff.evaluation import predict
from tradeoff.metrics import BUILTIN
from tradeoff.rundir import write_atomic, write_json
from tradeoff.runlog import live_progress, terminal_console
from tradeoff.training.convnet import ConvNet
from tradeoff.training.dataset_distillation import JUDGE_AUGMENTATION, Method, distill_dataset
from tradeoff.training.trainer import Trainer

SPLIT_FILES = {"train": "synthetic.npz", "val": "val.npz", "test": "test.npz"}
SUMMARY = "distill.json"


@dataclass(frozen=True)
class DistilledData:
    synthetic: Split
    test_accuracy: float  # of the judge model trained on `synthetic` alone
    out: Path  # the folder holding synthetic.npz, val.npz, test.npz and distill.json
    summary: dict[str, Any]

    @property
    def data_section(self) -> dict[str, str]:
        """The task file's data section that trains on the synthetic set."""
        return self.summary["data"]  # type: ignore[no-any-return]


def judge_model(shape: tuple[int, ...], classes: int, width: int = 128) -> nn.Module:
    """What a distilled set is judged by: the papers' ConvNet for images, one hidden layer of `width` for vectors."""
    if len(shape) == 3:
        return ConvNet(shape, classes, width)
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(shape)), width), nn.ReLU(), nn.Linear(width, classes))


JUDGE_BATCH = 256  # the DM paper's evaluation batch
PAPER_JUDGE_EPOCHS = 1000  # how long the DM paper trains its judge, whatever the set's size


def _steps_per_epoch(samples: int) -> int:
    return math.ceil(samples / min(JUDGE_BATCH, samples))


def judge_steps(samples: int, epochs: int = PAPER_JUDGE_EPOCHS) -> int:
    """The steps of `epochs` epochs over `samples` samples in batches of JUDGE_BATCH."""
    return epochs * _steps_per_epoch(samples)


def accuracy_trained_on(train: Split, test: Split, *, seed: int = 0, steps: int = 300, width: int = 128,
                        classes: int | None = None, augment: AugmentSpec | None = None,
                        on_epoch_end: Callable[[int, int], None] | None = None) -> float:
    """Test accuracy of a fresh judge model (initialised from `seed`) trained on `train` alone: SGD at 0.01 with
    momentum 0.9, weight decay 5e-4 and a cosine schedule, as in the DM paper's evaluation, for about `steps` steps
    of up to JUDGE_BATCH samples (whole epochs), no early stopping. `on_epoch_end(epoch, epochs)` follows the
    training."""
    classes = classes or int(max(train.y.max(), test.y.max())) + 1
    batch = min(JUDGE_BATCH, len(train))
    epochs = max(1, math.ceil(steps / _steps_per_epoch(len(train))))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = judge_model(tuple(train.x.shape[1:]), classes, width)
    spec = TrainSpec(epochs=epochs, batch_size=batch, optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4,
                     schedule="cosine", clip=None, early_stopping=None, augment=augment, seed=seed)
    # the monitored split decides nothing without early stopping; the synthetic set itself is the cheapest to score
    Trainer(spec).fit(model, train, train,
                      on_epoch_end=None if on_epoch_end is None else lambda r: on_epoch_end(r.epoch, epochs))
    with torch.inference_mode():
        outputs = predict(lambda x: model(torch.from_numpy(x)).numpy(), test)
    return BUILTIN["accuracy"](outputs, test.y, test.y)


def _npz(split: Split) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=split.x, y=split.y)
    return buffer.getvalue()


@contextlib.contextmanager
def _bars(iterations: int, quiet: bool) -> Iterator[tuple[Callable[[int], None], Callable[[int, int], None]]]:
    """Two bars, distillation steps then the judge's training epochs; nothing when quiet or not on a terminal."""
    console = terminal_console()
    if quiet or not console.is_terminal:
        yield (lambda step: None), (lambda epoch, epochs: None)
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with live_progress(console, *columns) as progress:
        distilling = progress.add_task("distil", total=iterations, visible=iterations > 0)
        training = progress.add_task("train judge", total=None)
        yield (lambda step: progress.update(distilling, completed=step),
               lambda epoch, epochs: progress.update(training, completed=epoch, total=epochs))


def distill_data(task: Task | str | Path, *, per_class: int = 10, method: Method = "dm", out: str | Path = "distilled",
                 seed: int = 0, iterations: int = 100, lr: float = 1.0, real_per_class: int = 32,
                 augment: bool = False, train_steps: int = 300, quiet: bool = False) -> DistilledData:
    """Distil the task's training split to `per_class` samples a class (see `distill_dataset`), write
    out/synthetic.npz with the task's val.npz and test.npz beside it, train a fresh judge model on the synthetic set
    alone for about `train_steps` steps and write its test accuracy, with the settings, to out/distill.json.
    `augment`: DSA's warp in matching and in the judge's training, as the DM paper measures (images only)."""
    spec = task if isinstance(task, Task) else load_task(task)
    data = load_data(spec.data, spec.import_dirs)
    if not data.labelled:
        raise DataError("dataset distillation keeps samples per class, and this data has no labels",
                        "give data with a target")
    out = Path(out)
    with _bars(iterations if method == "dm" else 0, quiet) as (on_step, on_epoch):
        started = time.monotonic()
        synthetic = distill_dataset(data.train, per_class, method=method, seed=seed, iterations=iterations, lr=lr,
                                    real_per_class=real_per_class, augment=augment, on_iteration=on_step)
        distilled = time.monotonic()
        for split, name in zip((synthetic, data.val, data.test), SPLIT_FILES.values(), strict=True):
            write_atomic(out / name, _npz(split))
        judge_augmented = augment and len(data.sample_shape) == 3
        accuracy = accuracy_trained_on(synthetic, data.test, seed=seed, steps=train_steps, on_epoch_end=on_epoch,
                                       augment=JUDGE_AUGMENTATION if judge_augmented else None)
    summary = {
        "task": spec.name, "method": method, "per_class": per_class, "samples": len(synthetic), "seed": seed,
        "settings": {"iterations": iterations, "lr": lr, "real_per_class": real_per_class,
                     "augment": augment} if method == "dm" else {},
        "distilled_from": len(data.train), "seconds": {"distil": distilled - started,
                                                      "train": time.monotonic() - distilled},
        "judge": {"model": "ConvNet" if len(data.sample_shape) == 3 else "MLP", "train_steps": train_steps,
                  "trained_on": "the synthetic set alone", "augmented": judge_augmented,
                  "test_accuracy": accuracy, "test_samples": len(data.test)},
        "data": {"source": "file", **{key: str((out / name).resolve()) for key, name in SPLIT_FILES.items()}},
    }
    write_json(out / SUMMARY, summary)
    return DistilledData(synthetic, accuracy, out, summary)
