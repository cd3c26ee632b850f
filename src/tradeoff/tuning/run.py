"""`tradeoff tune` and `to.tune`: search training hyperparameters and model options on validation, then train the
best once more on train+val and score it on test, once.

Every trial builds its model anew, has its cost measured before training (a ceiling it breaks prunes it then), and
trains on the training split watched on validation, where the pruner may stop it after any epoch. The best trial
is the first objective's best among the trials within the ceilings (later objectives break ties). The run
directory holds the study, tune.json, report.html, the final model's weights, and tuned.yaml: the task with the
tuned options and those weights, which `tradeoff optimize` takes as it is.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from safetensors.torch import save

from tradeoff.config import Constraints, Settings, Task, TrainSpec, TuneSpec
from tradeoff.context import Context
from tradeoff.data import DataBundle, Split
from tradeoff.env import collect_env
from tradeoff.errors import ConfigError, ModelError, TradeoffError
from tradeoff.evaluation import Evaluator
from tradeoff.imports import import_object
from tradeoff.metrics import Metric, get_metric
from tradeoff.model import ModelHandle
from tradeoff.problem import Problem, Subject, problem
from tradeoff.report.tuning import render_tuning_html
from tradeoff.rundir import RunDir, write_atomic, write_json, write_yaml
from tradeoff.runlog import trial_progress
from tradeoff.search.record import TrialRecord, records
from tradeoff.search.study import StudyRun, counted_trials, open_study
from tradeoff.tuning.cost import ONNX_RUNTIMES, CostMeter
from tradeoff.tuning.space import HyperparameterSpace, train_model
from tradeoff.tuning.strategies import dominance_rule, pruner_for, sampler_for


class NoTrialFinished(TradeoffError):
    pass


@dataclass(frozen=True)
class TuneResult:
    params: dict[str, Any]  # the best trial's values, by key (train.lr, model.widths)
    trial: int
    val_metric: float  # the best trial's, trained on train, on validation: what chose it
    test_metric: float  # the final model's (trained on train+val), scored once
    model: ModelHandle  # the final model
    epochs_trained: int  # by the whole search: its compute
    run_dir: Path
    tuned_task: Path | None  # tuned.yaml, where the model came from a task file


def tune(subject: Subject | None = None, *, data: DataBundle | None = None, out: str | Path = "runs",
         storage: str | None = None, quiet: bool = False, debug: bool = False, **settings: Any) -> TuneResult:
    """Tune a task's training and model options (a task file or Task with a `tune:` section, or a torch module with
    `data=` and settings such as `tune={"space": {"train.lr": {"low": 1e-4, "high": 1e-2, "log": True}}}`).
    `storage` overrides search.storage (an RDB URL shares the study with other workers)."""
    given = problem(subject, data=data, where="tune()", **settings)
    spec = given.settings.tune
    if spec is None:
        raise ConfigError("the task has no tune: section",
                          "add tune: {space: {train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}}}")
    if given.model.module is None:
        raise ModelError("tuning trains the model, and this one is ONNX",
                         "give a torch model (source: torch with a factory) to tune")
    metric = get_metric(given.settings.metric, given.search_dirs)
    if not metric.needs_labels:
        raise ConfigError(f"tuning trains on labels, and metric '{metric.name}' compares with the given model instead",
                          "use a metric of labels (accuracy, f1, mse, ...)")
    settings_ = _study_settings(given.settings, spec, storage)
    run = settings_.runtime
    evaluator = Evaluator(given.model, given.data, metric, run.threads, run.batch_sizes, run.target)
    limits = settings_.constraints.model_dump()
    meter = CostMeter(evaluator, limits, timed="latency" in spec.objectives or limits["max_latency_ms"] is not None,
                      runtime=run.target if run.target in ONNX_RUNTIMES else "torch")
    function = import_object(spec.train_function, "tune.train_function", given.search_dirs) \
        if spec.train_function else None
    space = HyperparameterSpace.parse(spec.space, given.model, train=given.settings.train, data=given.data,
                                      metric=metric, meter=meter, train_function=function,
                                      search_dirs=given.search_dirs)
    run_dir = RunDir(Path(out) / settings_.name)
    write_yaml(run_dir.task, given.record)
    write_json(run_dir.env, {**collect_env(run.threads), "argv": shlex.join(sys.argv),
                             "seeds": {"search": settings_.search.seed, "train": given.settings.train.seed,
                                       "data": given.data.spec.seed}})

    search = settings_.search
    url = {"sqlite": run_dir.storage_url(), "memory": None}.get(search.storage, search.storage)
    max_epochs = max([given.settings.train.epochs, *_epoch_choices(spec)])
    study = open_study(settings_, url, _task_key(given.record),
                       sampler_for(spec.sampler, search.seed, space, len(spec.objectives), given.search_dirs),
                       pruner_for(spec.pruner_name, max_epochs))
    ctx = Context(data=given.data, seed=search.seed, threads=run.threads, metric=metric)
    with trial_progress(search.trials, counted_trials(study), quiet, _described) as (on_trial, on_status):
        StudyRun(study, space, replace(ctx, progress=on_status), space.measure, settings_, metric.higher_is_better,
                 on_trial, debug, dominated=dominance_rule(spec.pruner_name)).run()

    trials = [r for r in records(study) if r.counted]
    best = _best(trials)
    final = _final_model(space, best, given, metric)
    test_metric = evaluator.score(final, "test")  # the one reading of the test split
    train = space.train_options(space.at(best.params))
    tuned = _write(run_dir, given, study, best, final, train, test_metric, trials, spec, metric)
    return TuneResult(params=dict(best.candidate or {}), trial=best.number, val_metric=float(best.values["metric"]),  # type: ignore[arg-type]
                      test_metric=test_metric, model=final, epochs_trained=epochs_trained(trials),
                      run_dir=run_dir.root, tuned_task=tuned)


def _study_settings(settings: Settings, spec: TuneSpec, storage: str | None) -> Settings:
    """The settings the study runs under: the tune objectives, the ceilings (a metric drop bounds optimize, which
    compares with a baseline; tuning has none), and the storage a flag may name."""
    limits = Constraints(max_latency_ms=settings.constraints.max_latency_ms,
                         max_size_bytes=settings.constraints.max_size_bytes)
    search = settings.search.model_copy(update={"storage": storage}) if storage else settings.search
    return settings.model_copy(update={"objectives": spec.objectives, "constraints": limits, "search": search})


def _epoch_choices(spec: TuneSpec) -> list[int]:
    raw = spec.space.get("train.epochs")
    if isinstance(raw, dict):
        return [int(raw.get("high", 1))]
    return [int(v) for v in raw] if isinstance(raw, list) else ([int(raw)] if raw is not None else [])


def _task_key(record: dict[str, Any]) -> str:
    """What must not change between a killed run and its resumption: all but the search's budgets."""
    search = {k: v for k, v in record.get("search", {}).items() if k not in ("trials", "timeout_s", "storage")}
    return hashlib.sha256(json.dumps({**record, "search": search}, sort_keys=True).encode()).hexdigest()


def _described(record: TrialRecord) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in (record.candidate or {}).items()) or "the task's own settings"


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def epochs_trained(trials: list[TrialRecord]) -> int:
    """The compute a search spent: every epoch every trial trained."""
    return int(sum(r.values.get("epochs") or 0 for r in trials))


def _best(trials: list[TrialRecord]) -> TrialRecord:
    finished = [r for r in trials if r.feasible and r.objectives is not None]
    if not finished:
        states = {s: sum(r.state == s for r in trials) for s in ("complete", "pruned", "failed")}
        raise NoTrialFinished(f"no trial finished within the constraints ({states['complete']} complete but over a "
                              f"ceiling, {states['pruned']} pruned, {states['failed']} failed)",
                              "loosen the ceilings, widen the space or raise search.trials")
    return min(finished, key=lambda r: r.objectives)  # type: ignore[arg-type, return-value]


def _final_model(space: HyperparameterSpace, best: TrialRecord, given: Problem, metric: Metric) -> ModelHandle:
    """The best trial's model trained again, from the same initial weights, on train+val for as many epochs as
    brought the trial its weights: validation has decided, so it may now teach."""
    candidate = space.at(best.params)
    options = space.train_options(candidate).model_copy(
        update={"epochs": int(best.values.get("retrain_epochs") or 1), "early_stopping": None, "warmup_epochs": 0.0})
    handle = space.fresh_model(candidate, options.seed)
    module = handle.torch_module()
    data = given.data
    both = Split(np.concatenate([data.train.x, data.val.x]), np.concatenate([data.train.y, data.val.y]))
    train_model(module, replace(data, train=both), options, metric, lambda epoch, value: None,
                train_function=space.train_function)
    return handle.with_module(module)


def _write(run_dir: RunDir, given: Problem, study: optuna.Study, best: TrialRecord, final: ModelHandle,
           train: TrainSpec, test_metric: float, trials: list[TrialRecord], spec: TuneSpec,
           metric: Metric) -> Path | None:
    """The final weights, tune.json, report.html, and tuned.yaml: the task with the best options and those
    weights (only where the model came from a task file's factory, which can build it again)."""
    module = final.module
    assert module is not None
    write_atomic(run_dir.weights, save({k: v.contiguous() for k, v in module.state_dict().items()}))
    defaults = next((r for r in trials if r.strategy == "defaults"), None)
    summary = {
        "metric": {"name": metric.name, "higher_is_better": metric.higher_is_better},
        "objectives": list(spec.objectives), "sampler": spec.sampler, "pruner": spec.pruner_name,
        "best": {"trial": best.number, "params": best.candidate, "values": best.values},
        "defaults": {"trial": defaults.number, "values": defaults.values} if defaults else None,
        "final": {"trained_on": "train+val", "epochs": int(best.values.get("retrain_epochs") or 1),
                  "factory_options": final.factory_options, "test_metric": test_metric},
        "compute": {"epochs_trained": epochs_trained(trials),
                    **{state: sum(r.state == state for r in trials) for state in ("complete", "pruned", "failed")}},
        "trials": [{"number": r.number, "state": r.state, "strategy": r.strategy, "params": r.candidate,
                    "values": r.values, "note": r.note} for r in trials],
    }
    write_json(run_dir.tune_json, summary)
    write_atomic(run_dir.report_html, render_tuning_html(run_dir.root.name, summary, study, trials,
                                                         given.settings.runtime.batch_sizes[0]))
    if not isinstance(given.settings, Task) or given.settings.model.factory is None:
        return None
    record = {k: v for k, v in given.record.items() if k != "tune"}
    record["name"] = f"{given.settings.name}-tuned"
    record["model"] = {**record["model"], "options": final.factory_options,
                       "weights": str(run_dir.weights.resolve())}
    record["train"] = train.model_dump(mode="json")
    write_yaml(run_dir.tuned_task, record)
    return run_dir.tuned_task

