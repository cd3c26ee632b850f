"""`tradeoff train` and `to.train`: train a task's torch model with the Trainer and write runs/<name>/.

The model is the task's factory (from scratch, or from `model.weights`); the data its splits. Early stopping
watches a holdout of train unless `train.early_stopping.split: val` says validation may be spent; the test split
is scored once, after training, for the record. Under torchrun every process trains and only the first writes.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save

from tradeoff.config import Task, load_task
from tradeoff.data import DataBundle
from tradeoff.env import collect_env
from tradeoff.errors import ModelError
from tradeoff.evaluation import predict
from tradeoff.metrics import Metric, get_metric
from tradeoff.model import ModelHandle
from tradeoff.problem import Subject, is_task, problem
from tradeoff.report.training import render_training_html
from tradeoff.rundir import RunDir, write_atomic, write_json, write_yaml
from tradeoff.runlog import labelled_bar, live_progress, terminal_console
from tradeoff.runtimes import runtime_for
from tradeoff.training.distributed import world
from tradeoff.training.trainer import EpochRecord, Trainer, TrainResult


@dataclass(frozen=True)
class TrainedModel:
    model: ModelHandle
    result: TrainResult
    val_metric: float
    test_metric: float  # scored once, after training; decided nothing
    run_dir: Path


@contextlib.contextmanager
def _epoch_bar(total: int, quiet: bool) -> Iterator[Callable[[EpochRecord], None]]:
    """Advances once per epoch with the epoch's losses; a plain line per epoch without a terminal."""
    if quiet or not world().main:
        yield lambda record: None
        return
    console = terminal_console()

    def said(r: EpochRecord) -> str:
        score = "" if r.monitor_metric is None else f", metric {r.monitor_metric:.4f}"
        return f"epoch {r.epoch}/{total}: train loss {r.train_loss:.4f}, monitored loss {r.monitor_loss:.4f}{score}"

    if not console.is_terminal:
        yield lambda record: console.print(said(record), markup=False)
        return
    with live_progress(console, *labelled_bar("train")) as progress:
        bar = progress.add_task("", total=total)
        yield lambda record: progress.update(bar, completed=record.epoch, description=said(record))


def train(subject: Subject | None = None, *, data: DataBundle | None = None, out: str | Path = "runs",
          resume: bool = False, quiet: bool = False, **settings: Any) -> TrainedModel:
    """Train a task's model (a task file or Task, or a torch module with `data=` and settings such as
    `train={"epochs": 30}`) and write runs/<name>/: model.safetensors, history.json (every epoch), train.json,
    report.html (the curves), and train_state.pt, from which `resume=True` continues a killed run."""
    if is_task(subject):  # a model the factory builds draws its initial weights from the train seed
        subject = subject if isinstance(subject, Task) else load_task(subject)  # type: ignore[arg-type]
        torch.manual_seed(subject.train.seed)
    given = problem(subject, data=data, where="train()", **settings)
    module = given.model.module
    if module is None:
        raise ModelError("training needs a torch model, and this one is ONNX",
                         "give a torch module or a task whose model has source: torch or huggingface")
    spec, here = given.settings, world()
    metric = get_metric(spec.metric, given.search_dirs)
    run_dir = RunDir(Path(out) / spec.name)
    if not resume and here.main:
        run_dir.train_state.unlink(missing_ok=True)
    if here.main:
        write_yaml(run_dir.task, given.record)
        write_json(run_dir.env, {**collect_env(spec.runtime.threads), "seeds": {"train": spec.train.seed,
                                                                                "data": given.data.spec.seed},
                                 "processes": here.size, "argv": shlex.join(sys.argv)})
    started = time.monotonic()
    with _epoch_bar(spec.train.epochs, quiet) as on_epoch_end:
        result = Trainer(spec.train).train(module, given.data, metric=metric, checkpoint=run_dir.train_state,
                                           resume=resume, on_epoch_end=on_epoch_end)
    trained = replace(given.model, module=module.eval())
    run = runtime_for(trained).load(trained, spec.runtime.threads)
    scores = {name: metric(predict(run, split), split.y, split.y)
              for name, split in (("val", given.data.val), ("test", given.data.test))}
    if here.main:
        _write(run_dir, trained, result, scores, metric, time.monotonic() - started)
    return TrainedModel(trained, result, scores["val"], scores["test"], run_dir.root)


def _write(run_dir: RunDir, model: ModelHandle, result: TrainResult, scores: dict[str, float], metric: Metric,
           seconds: float) -> None:
    history = [asdict(r) for r in result.history]
    summary = {"epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
               "stopped_early": result.stopped_early, "best_monitored": result.best_value,
               "metric": {"name": metric.name, "higher_is_better": metric.higher_is_better, **scores},
               "seconds": seconds}
    write_atomic(run_dir.weights, save({k: v.contiguous() for k, v in model.module.state_dict().items()}))  # type: ignore[union-attr]
    write_json(run_dir.history, history)
    write_json(run_dir.train_json, summary)
    write_atomic(run_dir.report_html, render_training_html(run_dir.root.name, summary, history))
