"""`tradeoff tune` / `to.tune` (training and model options) and `tradeoff nas` / `to.nas` (architectures): searches
whose candidates are trained, decided on validation; the chosen one is trained once more on train+val and scored
on test, once.

Every trial builds its model anew, has its cost measured before training (a ceiling it breaks prunes it then), and
trains on the training split watched on validation, where the pruner may stop it after any epoch. The best trial
is the first objective's best among the trials within the ceilings (later objectives break ties). The run
directory holds the study, tune.json or nas.json, report.html, the final model's weights, and tuned.yaml or
nas.yaml: the task with the chosen options or architecture and those weights, which `tradeoff optimize` takes as
it is.
"""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from safetensors.torch import save

from tradeoff.config import NasSpec, Rerank, Settings, Task, TrainedSearch, TrainSpec, TuneSpec
from tradeoff.context import Context
from tradeoff.data import DataBundle
from tradeoff.env import collect_env
from tradeoff.errors import ConfigError, ModelError, TradeoffError
from tradeoff.evaluation import INTERLEAVED_ROUNDS, Evaluator
from tradeoff.imports import import_object
from tradeoff.metrics import Metric, get_metric
from tradeoff.model import ModelHandle
from tradeoff.nas import Architecture, load_space, proxy_batch, rank_by_proxy, sample_candidates
from tradeoff.objectives import minimized
from tradeoff.problem import Problem, Subject, problem
from tradeoff.report.tuning import render_tuning_html
from tradeoff.rundir import RunDir, write_atomic, write_json, write_yaml
from tradeoff.runlog import step_progress, trial_progress
from tradeoff.search.record import TrialRecord, records, task_key
from tradeoff.search.select import dominates, pareto_front
from tradeoff.search.study import StudyRun, counted_trials, open_study, sampler_seed, study_url
from tradeoff.search.tracking import mlflow_tracker
from tradeoff.training.distill import KnowledgeDistillation
from tradeoff.tuning.cost import ONNX_RUNTIMES, CostMeter
from tradeoff.tuning.space import Hyperparameters, HyperparameterSpace, Teaching, train_model
from tradeoff.tuning.strategies import dominance_rule, pruner_for, sampler_for


class NoTrialFinished(TradeoffError):
    pass


# the finalists' latency timed again beside the task's model, in twice the rounds each candidate was admitted by
RETIMING_ROUNDS = 2 * INTERLEAVED_ROUNDS


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


@dataclass(frozen=True)
class NasResult:
    architecture: dict[str, Any]  # the chosen network as a task file's model section (factory, options)
    trial: int
    values: dict[str, float | None]  # the chosen trial's, on validation: metric, latency, size, params, macs
    test_metric: float  # the final model's (the architecture trained on train+val), scored once
    model: ModelHandle
    front: list[int]  # trials on the Pareto front of validation metric, latency and parameters
    reranked: list[dict[str, Any]]  # nas.rerank's trials trained again: trial, metric by the search and by rerank
    reference: dict[str, Any] | None  # the task's own model trained alike: values, test metric, who dominates it
    reference_model: ModelHandle | None  # that model, trained on train+val as the chosen one was
    epochs_trained: int
    run_dir: Path
    tuned_task: Path | None  # nas.yaml: the task with the chosen architecture and its weights


def tune(subject: Subject | None = None, *, data: DataBundle | None = None, out: str | Path = "runs",
         storage: str | None = None, quiet: bool = False, debug: bool = False, **settings: Any) -> TuneResult:
    """Tune a task's training and model options (a task file or Task with a `tune:` section, or a torch module with
    `data=` and settings such as `tune={"space": {"train.lr": {"low": 1e-4, "high": 1e-2, "log": True}}}`).
    `storage` overrides search.storage (an RDB URL shares the study with other workers)."""
    started = time.monotonic()
    given = problem(subject, data=data, where="tune()", **settings)
    searching = tune_search(given, storage, Path(out), started)
    setup, space = searching.setup, searching.space
    spec = given.settings.tune
    assert spec is not None  # tune_search refused a task without one
    study, trials = searching.run(quiet, debug)
    searched_at = time.monotonic()
    (best,), retimed = _finalists(space, setup, trials, 1)
    epochs = _retrain_epochs(best.values)
    final, test_metric = setup.final_model(space, space.at(best.params), epochs)
    defaults = next((r for r in trials if r.strategy == "defaults"), None)
    tuned = setup.write(study, space, best, final, test_metric, trials, epochs, sampler=spec.sampler,
                        defaults={"trial": defaults.number, "values": defaults.values} if defaults else None,
                        retimed=retimed, budget=setup.budget(space, trials, searched_at))
    return TuneResult(params=dict(best.candidate or {}), trial=best.number, val_metric=float(best.values["metric"]),  # type: ignore[arg-type]
                      test_metric=test_metric, model=final, epochs_trained=epochs_trained(trials),
                      run_dir=setup.written.root, tuned_task=tuned)


def nas(subject: Subject | None = None, *, data: DataBundle | None = None, out: str | Path = "runs",
        storage: str | None = None, quiet: bool = False, debug: bool = False, **settings: Any) -> NasResult:
    """Search architectures (a task file or Task with a `nas:` section): each trained by the task's train: options
    on train, judged on validation with its latency measured on the task's runtime; the task's own model is the
    reference, trained alike. With nas.rerank the best few trials are trained again by its longer options and
    judged on validation before the choice. The chosen architecture is trained on train+val and scored on test
    once, the reference too."""
    started = time.monotonic()
    given = problem(subject, data=data, where="nas()", **settings)
    searching = nas_search(given, storage, Path(out), started)
    setup, space, spec = searching.setup, searching.space, given.settings.nas
    assert spec is not None
    proxy_scores = _proxy_first(space, spec, given.data, setup.seed) if spec.proxy else []
    reference, reference_model = _reference(space, given, setup) if given.model.factory else (None, None)
    study, trials = searching.run(quiet, debug)
    searched_at = time.monotonic()
    finalists, retimed = _finalists(space, setup, trials, spec.rerank.top if spec.rerank is not None else 1)
    best = finalists[0]
    epochs = _retrain_epochs(best.values)
    reranked: list[dict[str, Any]] = []
    if spec.rerank is not None:
        best, epochs, reranked = _reranked(space, setup, finalists, spec.rerank, quiet)
    final, test_metric = setup.final_model(space, space.at(best.params), epochs)
    points = {r.number: _cost_point(r.values, setup.first_batch, setup.metric) for r in trials if r.feasible}
    front = pareto_front(points)
    if reference is not None:
        mine = _cost_point(reference["values"], setup.first_batch, setup.metric)
        reference["dominated_by"] = [n for n, point in points.items() if dominates(point, mine)]
        if reranked:  # the rerank's own judge may rank the task's model above every architecture the search found
            sign = 1 if setup.metric.higher_is_better else -1
            reference["rerank_beats_all"] = all(sign * reference["rerank_metric"] > sign * r["metric"]
                                                for r in reranked)
    tuned = setup.write(study, space, best, final, test_metric, trials, epochs, sampler=spec.strategy, front=front,
                        reference=reference, proxy=proxy_scores, reranked=reranked, retimed=retimed,
                        budget=setup.budget(space, trials, searched_at))
    return NasResult(architecture=(best.candidate or {}).get("model", {}), trial=best.number, values=best.values,
                     test_metric=test_metric, model=final, front=front, reranked=reranked, reference=reference,
                     reference_model=reference_model, epochs_trained=epochs_trained(trials),
                     run_dir=setup.written.root, tuned_task=tuned)


@dataclass(frozen=True)
class Searching:
    """A search that trains its candidates, set up and ready to run: by the command that finalizes it, or by a
    `tradeoff worker` that only measures trials."""

    setup: _Setup
    space: HyperparameterSpace
    sampler: optuna.samplers.BaseSampler
    max_epochs: int  # the longest a trial may train: Hyperband's largest resource

    def run(self, quiet: bool, debug: bool = False,
            joining: str = "resuming the search") -> tuple[optuna.Study, list[TrialRecord]]:
        return self.setup.search(self.space, self.sampler, self.max_epochs, quiet, debug, joining)


def tune_search(given: Problem, storage: str | None, out: Path | None, started: float | None = None) -> Searching:
    """The tuning study of a task with a `tune:` section; `out` None writes no run directory (a worker); `started`
    (time.monotonic()) is when the run began, whence its time budget counts (None: now)."""
    spec = given.settings.tune
    if spec is None:
        raise ConfigError("the task has no tune: section",
                          "add tune: {space: {train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}}}")
    setup = _Setup.of(given, spec, storage, "tune", timed=False, out=out, started=started)
    function = import_object(spec.train_function, "tune.train_function", given.search_dirs) \
        if spec.train_function else None
    space = HyperparameterSpace.parse(spec.space, given.model, train_function=function, **setup.space_parts())
    sampler = sampler_for(spec.sampler, sampler_seed(setup.settings), space, len(spec.objectives),
                          given.search_dirs)
    return Searching(setup, space, sampler, max([given.settings.train.epochs, *_epoch_choices(spec)]))


def nas_search(given: Problem, storage: str | None, out: Path | None, started: float | None = None) -> Searching:
    """The architecture study of a task with a `nas:` section; `out` None writes no run directory (a worker);
    `started` as tune_search's."""
    spec = given.settings.nas
    if spec is None:
        raise ConfigError("the task has no nas: section",
                          "add nas: {space: {family: cnn, cnn: {depth: {low: 1, high: 4}, width: [16, 32, 64]}}}")
    setup = _Setup.of(given, spec, storage, "nas", timed=True, out=out, started=started)
    classes = int(given.data.train.y.max()) + 1
    architectures = load_space(spec.space, given.data.sample_shape, classes, given.search_dirs)
    space = HyperparameterSpace.parse({}, given.model, architectures=architectures, **setup.space_parts())
    if spec.rerank is not None:  # a wrong option fails now, not after the search
        space.train_options(Hyperparameters({}), "nas.rerank.train", spec.rerank.train)
        samples = len(given.data.train) + len(given.data.val)
        if spec.rerank.folds is not None and spec.rerank.folds > samples // 2:
            raise ConfigError(f"nas.rerank.folds {spec.rerank.folds} leaves fewer than 2 samples per fold of the "
                              f"{samples} in train+val", "use fewer folds, or none (validation judges)")
    sampler = sampler_for(spec.strategy, sampler_seed(setup.settings), space, len(spec.objectives),
                          given.search_dirs, population=spec.population, tournament=spec.tournament)
    return Searching(setup, space, sampler, given.settings.train.epochs)


@dataclass(frozen=True)
class _Setup:
    """What a search of trained candidates holds between its steps: the problem, the settings the study runs
    under, the metric, the evaluator and cost meter, and the run directory."""

    given: Problem
    spec: TrainedSearch
    kind: str  # tune or nas: names the section, the summary file and the derived task
    settings: Settings
    metric: Metric
    evaluator: Evaluator
    meter: CostMeter
    run_dir: RunDir | None  # None: a worker, which writes none
    started: float  # time.monotonic() when the run began: search.timeout_s is the whole run's budget

    @classmethod
    def of(cls, given: Problem, spec: TrainedSearch, storage: str | None, kind: str, timed: bool,
           out: Path | None, started: float | None = None) -> _Setup:
        """Check the problem suits a search that trains, and write task.yaml and env.json (where `out` is given);
        `timed`: latency is measured for every candidate, not only where an objective or a ceiling needs it."""
        if given.model.module is None:
            raise ModelError(f"{kind} trains the model, and this one is ONNX",
                             "give a torch model (source: torch with a factory)")
        metric = get_metric(given.settings.metric, given.search_dirs)
        if not metric.needs_labels:
            raise ConfigError(f"{kind} trains on labels, and metric '{metric.name}' compares with the given model "
                              f"instead", "use a metric of labels (accuracy, f1, mse, ...)")
        if spec.distill is not None:
            _check_teacher(given, spec, kind)
        settings = _study_settings(given.settings, spec, storage)
        run = settings.runtime
        evaluator = Evaluator(given.model, given.data, metric, run.threads, run.batch_sizes, run.target,
                              timing_s=run.timing_s)
        limits = settings.constraints.model_dump()
        meter = CostMeter(evaluator, given.model, limits,
                          timed="latency" in spec.objectives or timed,
                          runtime=run.target if run.target in ONNX_RUNTIMES else "torch",
                          screen="latency" not in spec.objectives)
        run_dir = None
        if out is not None:
            run_dir = RunDir(out / settings.name)
            write_yaml(run_dir.task, given.record)
            write_json(run_dir.env, {**collect_env(run.threads), "argv": shlex.join(sys.argv),
                                     "seeds": {"search": settings.search.seed, "train": given.settings.train.seed,
                                               "data": given.data.spec.seed}})
        return cls(given, spec, kind, settings, metric, evaluator, meter, run_dir,
                   time.monotonic() if started is None else started)

    @property
    def written(self) -> RunDir:
        """The run directory, which the command that finalizes has (a worker writes none)."""
        assert self.run_dir is not None, "a worker writes no run directory"
        return self.run_dir

    @property
    def seed(self) -> int:
        return self.settings.search.seed

    @property
    def first_batch(self) -> int:
        return self.settings.runtime.batch_sizes[0]

    @property
    def ctx(self) -> Context:
        return Context(data=self.given.data, seed=self.seed, threads=self.settings.runtime.threads,
                       metric=self.metric)

    def space_parts(self) -> dict[str, Any]:
        """What a HyperparameterSpace takes from the setup."""
        return {"train": self.given.settings.train, "data": self.given.data, "metric": self.metric,
                "meter": self.meter, "search_dirs": self.given.search_dirs, "teaching": self._teaching()}

    def _teaching(self) -> Teaching | None:
        """The task's own model as every candidate's teacher, where `distill` asks for it."""
        distill = self.spec.distill
        if distill is None:
            return None
        teacher = self.given.model.torch_module().eval()
        return lambda student: KnowledgeDistillation(student, teacher, distill.temperature, distill.weight)

    def search(self, space: HyperparameterSpace, sampler: optuna.samplers.BaseSampler, max_epochs: int, quiet: bool,
               debug: bool, joining: str) -> tuple[optuna.Study, list[TrialRecord]]:
        """Run (or resume, or join) the study to its budget; the study and its counted trials."""
        search = self.settings.search
        study = open_study(self.settings, study_url(search.storage, self.run_dir), task_key(self.given.record),
                           sampler, pruner_for(self.spec.pruner_name, max_epochs, self.spec.pruner_warmup_epochs))
        trackers = [mlflow_tracker(search.mlflow, self.settings, self.metric.higher_is_better)] if search.mlflow else []
        with trial_progress(search.trials, counted_trials(study), quiet, _described, joining) as (on_trial, status):
            StudyRun(study, space, replace(self.ctx, progress=status), space.measure, self.settings,
                     self.metric.higher_is_better, on_trial, debug, trackers=trackers,
                     dominated=dominance_rule(self.spec.pruner_name, self.spec.pruner_warmup_epochs),
                     started=self.started,
                     reserve=lambda counted: _trial_s(counted) + (self.after_search_s(space, counted)
                                                                  if self.run_dir else 0.0)).run()
        return study, [r for r in records(study) if r.counted]

    def budget(self, space: HyperparameterSpace, trials: list[TrialRecord], searched_at: float) -> dict[str, Any]:
        """How the run spent its time: the search (from the run's start), what it kept for the steps after it and
        what those took (until now)."""
        return {"timeout_s": self.settings.search.timeout_s, "search_s": searched_at - self.started,
                "reserved_s": self.after_search_s(space, trials), "after_search_s": time.monotonic() - searched_at}

    def after_search_s(self, space: HyperparameterSpace, trials: list[TrialRecord]) -> float:
        """Seconds that what follows the search will take if it ended now, reckoned from the speed the best
        trials trained at in it (seconds per sample and epoch, the samples an epoch trains on and those it is
        watched on alike: counting training samples only, a 30-minute search of benchmarks/nas.py kept 319 s for
        steps that took 384): the best retimed (what timing them cost when admitted, per round), trained again by
        the rerank's options (on each fold), and the chosen one trained on train+val. The time budget covers the
        run: a search that filled it would end late by all of these (8-9 minutes of that 30-minute run)."""
        rerank = self.rerank
        top = [r for r in _best_first(trials) if _train_s(r)][: rerank.top if rerank else 1]
        if not top:
            return 0.0
        trained, validation = len(space.data.train), len(space.data.val)
        final = trained + 2 * validation  # trains on train+val, watched on validation

        def per_sample_epoch(record: TrialRecord) -> float:
            return _train_s(record) / (max(record.values.get("epochs") or 1.0, 1.0) * (trained + validation))

        if rerank is None:
            seconds = per_sample_epoch(top[0]) * _retrain_epochs(top[0].values) * final
        else:  # each fold trains on the others and is watched on itself: every sample, once a fold
            per_sample = [per_sample_epoch(r) * space.train_options(space.at(r.params), "nas.rerank.train",
                                                                    rerank.train).epochs for r in top]
            seconds = sum(per_sample) * (trained + validation) * (rerank.folds or 1) + max(per_sample) * final
        if self.meter.latency_bounded:  # each round times the task's model and every finalist
            rounds = [(r.spend.wall_s - _train_s(r)) / max(r.latency.rounds if r.latency else 1, 1)
                      for r in top if r.spend is not None]
            seconds += RETIMING_ROUNDS * (len(top) + 1) / 2 * (float(np.mean(rounds)) if rounds else 0.0)
        return seconds

    @property
    def rerank(self) -> Rerank | None:
        return self.spec.rerank if isinstance(self.spec, NasSpec) else None

    def final_options(self, space: HyperparameterSpace, candidate: Hyperparameters) -> TrainSpec:
        """How the chosen candidate trains on train+val: its train options, the rerank's over them where the search
        reranks."""
        return space.train_options(candidate, overrides=self.rerank.train if self.rerank else None)

    def final_model(self, space: HyperparameterSpace, candidate: Hyperparameters,
                    epochs: int) -> tuple[ModelHandle, float]:
        """The chosen candidate trained again on train+val for `epochs` by `final_options`, and its test metric:
        the one reading of test."""
        final = retrained(space, candidate, self.final_options(space, candidate), epochs, self.metric)
        return final, self.evaluator.score(final, "test")

    def write(self, study: optuna.Study, space: HyperparameterSpace, best: TrialRecord, final: ModelHandle,
              test_metric: float, trials: list[TrialRecord], epochs: int, **extra: Any) -> Path | None:
        """The final weights, <kind>.json, report.html, and <kind>.yaml (tuned.yaml for tune): the task with the
        chosen options or architecture and those weights, which optimize takes as it is; only where the task came
        from a file (a module given in Python has no factory to rebuild it)."""
        module, run_dir = final.module, self.written
        assert module is not None
        weights = run_dir.weights
        write_atomic(weights, save({k: v.contiguous() for k, v in module.state_dict().items()}))
        summary = {
            "metric": {"name": self.metric.name, "higher_is_better": self.metric.higher_is_better},
            "objectives": list(self.spec.objectives), "pruner": self.spec.pruner_name,
            "distill": self.spec.distill.model_dump() if self.spec.distill else None, **extra,
            "best": {"trial": best.number, "params": best.candidate, "values": best.values},
            "final": {"trained_on": "train+val", "epochs": epochs,
                      "factory": final.factory, "factory_options": final.factory_options, "test_metric": test_metric},
            "compute": {"epochs_trained": epochs_trained(trials),
                        **{state: sum(r.state == state for r in trials) for state in ("complete", "pruned", "failed")}},
            "trials": [{"number": r.number, "state": r.state, "strategy": r.strategy, "params": r.candidate,
                        "values": r.values, "note": r.note} for r in trials],
        }
        write_json(run_dir.root / f"{self.kind}.json", summary)
        write_atomic(run_dir.report_html, render_tuning_html(run_dir.root.name, self.kind, summary, study,
                                                                  trials, self.first_batch))
        if not isinstance(self.given.settings, Task) or final.factory is None:
            return None
        record = {k: v for k, v in self.given.record.items() if k not in ("tune", "nas")}
        record["name"] = f"{self.given.settings.name}-{self.kind}"
        record["model"] = {"source": "torch", "factory": final.factory, "options": final.factory_options,
                           "weights": str(weights.resolve())}
        record["train"] = self.final_options(space, space.at(best.params)).model_dump(mode="json")
        path = run_dir.root / ("tuned.yaml" if self.kind == "tune" else f"{self.kind}.yaml")
        write_yaml(path, record)
        return path


def _check_teacher(given: Problem, spec: TrainedSearch, kind: str) -> None:
    """`distill` learns the task's model's class probabilities in the Trainer, so the labels must be classes, the
    training the Trainer's and the model trained."""
    if given.data.train.y.dtype.kind not in "iu":
        raise ConfigError(f"{kind}.distill teaches class probabilities, and these labels are not classes",
                          "leave distill out for regression")
    if isinstance(spec, TuneSpec) and spec.train_function:
        raise ConfigError("tune.distill cannot reach into tune.train_function's training", "leave one of them out")
    model = getattr(given.settings, "model", None)  # a task file's; a model given in Python is taken as trained
    if model is not None and model.source == "torch" and model.weights is None:
        raise ConfigError(f"{kind}.distill learns from the task's model, and it has no trained weights",
                          "set model.weights to the trained model, or leave distill out")


def retrained(space: HyperparameterSpace, candidate: Hyperparameters, options: TrainSpec, epochs: int,
              metric: Metric) -> ModelHandle:
    """A candidate trained again, from the same initial weights, on train+val by `options` for `epochs` (as many as
    brought its trial its kept weights): validation has decided, so it may now teach."""
    options = options.model_copy(update={"epochs": epochs, "early_stopping": None, "warmup_epochs": 0.0})
    return _trained_anew(space, candidate, options, replace(space.data, train=space.data.train_and_val()), metric)[0]


def _trained_anew(space: HyperparameterSpace, candidate: Hyperparameters, options: TrainSpec, data: DataBundle,
                  metric: Metric) -> tuple[ModelHandle, int]:
    """The candidate built from `options.seed` and trained by `options` on `data`'s training split, with the epochs
    that brought it its kept weights."""
    handle = space.fresh_model(candidate, options.seed)
    module = handle.torch_module()
    epochs = train_model(module, data, options, metric, lambda epoch, value: None,
                         train_function=space.train_function, teaching=space.teaching)
    return handle.with_module(module), epochs


def _reference(space: HyperparameterSpace, given: Problem, setup: _Setup) -> tuple[dict[str, Any], ModelHandle]:
    """The task's own model, trained and measured as every trial is (never pruned), trained by rerank's options
    where the search reranks, then trained on train+val as the chosen one is and scored on test once: what an
    architecture search has to beat."""
    assert given.model.factory is not None
    candidate = Hyperparameters({}, Architecture(given.model.factory, given.model.factory_options))
    measured = space.measure(space.build(candidate, setup.ctx, bounded=False))
    epochs, said = _retrain_epochs(measured.values), {}
    if setup.rerank is not None:
        judged, epochs = _trained_by_rerank(space, setup, candidate, setup.rerank)
        said = {f"rerank_{key}": value for key, value in judged.items()}
    final, test_metric = setup.final_model(space, candidate, epochs)
    return {"model": candidate.architecture.model_section(),  # type: ignore[union-attr]
            "values": measured.values, **said, "test_metric": test_metric}, final


def _finalists(space: HyperparameterSpace, setup: _Setup, trials: list[TrialRecord],
               wanted: int) -> tuple[list[TrialRecord], list[dict[str, Any]]]:
    """The `wanted` best trials within the ceilings, best first, and where a latency ceiling bounds the search, each
    retimed trial's figures: the best are timed again, longer, beside the task's model, and one over a ceiling then
    gives its place to the next."""
    ranked = _ranked(trials)
    if not setup.meter.latency_bounded:
        return ranked[:wanted], []
    kept: list[TrialRecord] = []
    retimed: list[dict[str, Any]] = []
    while len(kept) < wanted and len(retimed) < len(ranked):
        batch = ranked[len(retimed): len(retimed) + wanted - len(kept)]
        models = [space.fresh_model(space.at(r.params), setup.seed) for r in batch]
        for record, (values, broken) in zip(batch, setup.meter.retimed(models, setup.ctx, RETIMING_ROUNDS),
                                            strict=True):
            retimed.append({"trial": record.number, "values": {k: v for k, v in values.items() if "latency" in k},
                            "over": [v.constraint for v in broken]})
            if not broken:
                kept.append(record)
    if not kept:
        raise NoTrialFinished(f"none of the {len(ranked)} trials within the ceilings held its latency ceiling when "
                              f"timed again for {RETIMING_ROUNDS} rounds beside the task's model",
                              "loosen max_latency_ratio or max_latency_ms: the search admitted them by timing noise")
    return kept, retimed


def _reranked(space: HyperparameterSpace, setup: _Setup, top: list[TrialRecord], rerank: Rerank,
              quiet: bool) -> tuple[TrialRecord, int, list[dict[str, Any]]]:
    """The `top` trials (each a distinct candidate: the study closes a repeat unmeasured) trained again by rerank's
    options and judged on held-out data (validation, or folds of train+val): the best of them (the search's order
    breaks ties), the epochs to train it for on train+val, and each one's figures."""
    judged: list[tuple[dict[str, Any], int]] = []
    with step_progress("rerank", len(top), quiet) as advance:
        for record in top:
            judged.append(_trained_by_rerank(space, setup, space.at(record.params), rerank))
            advance(f"trial {record.number}: {setup.metric.name} {judged[-1][0]['metric']:.4f}")
    sign = 1 if setup.metric.higher_is_better else -1
    chosen = max(range(len(top)), key=lambda i: (sign * judged[i][0]["metric"], -i))
    entries = [{"trial": record.number, "search_metric": record.values.get("metric"), **figures, "epochs": epochs}
               for record, (figures, epochs) in zip(top, judged, strict=True)]
    return top[chosen], judged[chosen][1], entries


def _trained_by_rerank(space: HyperparameterSpace, setup: _Setup, candidate: Hyperparameters,
                       rerank: Rerank) -> tuple[dict[str, Any], int]:
    """A candidate trained anew by rerank's options and judged on held-out data: on validation after training on the
    training split, or with `rerank.folds` on each fold of train+val after training on the others (their mean and
    each fold's metric). With the epochs that brought it its kept weights (the folds' mean)."""
    options = space.train_options(candidate, "nas.rerank.train", rerank.train)
    if rerank.folds is None:
        trained, epochs = _trained_anew(space, candidate, options, space.data, setup.metric)
        return {"metric": setup.evaluator.score(trained, "val")}, epochs
    folds, epochs_kept = [], []
    for data in space.data.cross_validation(rerank.folds, options.seed):
        trained, epochs = _trained_anew(space, candidate, options, data, setup.metric)
        folds.append(setup.evaluator.score_on(trained, data.val))
        epochs_kept.append(epochs)
    return {"metric": float(np.mean(folds)), "folds": folds}, round(float(np.mean(epochs_kept)))


def _proxy_first(space: HyperparameterSpace, spec: NasSpec, data: DataBundle, seed: int) -> list[dict[str, Any]]:
    """Rank `proxy_candidates` random architectures by the zero-cost proxy on one training batch; the best
    `proxy_top` are the search's first trials. Returns every scored candidate, best first."""
    assert space.architectures is not None and spec.proxy is not None
    ranked = rank_by_proxy(sample_candidates(space.architectures, spec.proxy_candidates, seed),
                           proxy_batch(data.train, seed=seed), spec.proxy, seed)
    space.first = [(r.candidate.params, "proxy") for r in ranked[: spec.proxy_top]]
    return [{"params": r.candidate.params, "score": r.score} for r in ranked]


def _cost_point(values: dict[str, float | None], first_batch: int, metric: Metric) -> tuple[float, ...]:
    """(metric, latency, parameters), all minimized: the axes of an architecture's front."""
    return minimized(("metric", "latency", "size"), {**values, "size_bytes": values.get("params")}, first_batch,
                     metric.higher_is_better)


def _study_settings(settings: Settings, spec: TrainedSearch, storage: str | None) -> Settings:
    """The settings the study runs under: the search's objectives, the ceilings (a metric drop bounds optimize,
    which compares with a baseline; a search that trains has none), and the storage a flag may name."""
    if settings.constraints.max_cost_per_million is not None:
        raise ConfigError("constraints.max_cost_per_million: a search that trains does not price its candidates",
                          "bound max_latency_ms or max_latency_ratio instead")
    limits = settings.constraints.model_copy(update={"max_metric_drop": None, "max_cost_per_million": None})
    search = settings.search.model_copy(update={"storage": storage}) if storage else settings.search
    return settings.model_copy(update={"objectives": spec.objectives, "constraints": limits, "search": search})


def _epoch_choices(spec: TuneSpec) -> list[int]:
    raw = spec.space.get("train.epochs")
    if isinstance(raw, dict):
        return [int(raw.get("high", 1))]
    return [int(v) for v in raw] if isinstance(raw, list) else ([int(raw)] if raw is not None else [])


def _described(record: TrialRecord) -> str:
    """A trial's candidate in a line: its values, and an architecture as its factory's name and options."""
    said = []
    for key, value in (record.candidate or {}).items():
        if key == "model":
            said.append(str(Architecture(value["factory"], value["options"])))
        else:
            said.append(f"{key}={_short(value)}")
    return ", ".join(said) or "the task's own settings"


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _train_s(record: TrialRecord) -> float:
    """The seconds a measured trial's training took (0 for trials measured before it was recorded)."""
    return float(record.values.get("train_s") or 0.0)


def _trial_s(trials: list[TrialRecord]) -> float:
    """What the next trial may take: the median of the trials measured so far (a worker keeps only this; the
    command that finalizes keeps time for what follows the search too)."""
    spent = [r.spend.wall_s for r in trials if r.spend is not None]
    return float(np.median(spent)) if spent else 0.0


def _retrain_epochs(values: dict[str, float | None]) -> int:
    """The epochs that brought a measured candidate its kept weights: what its retrain on train+val repeats."""
    return int(values.get("retrain_epochs") or 1)


def epochs_trained(trials: list[TrialRecord]) -> int:
    """The compute a search spent: every epoch every trial trained."""
    return int(sum(r.values.get("epochs") or 0 for r in trials))


def _best_first(trials: list[TrialRecord]) -> list[TrialRecord]:
    """The trials within the ceilings, best first by their objectives (none, while none has finished so)."""
    return sorted((r for r in trials if r.feasible and r.objectives is not None), key=lambda r: r.objectives or ())


def _ranked(trials: list[TrialRecord]) -> list[TrialRecord]:
    """`_best_first`, where at least one trial finished within the ceilings."""
    if not (finished := _best_first(trials)):
        states = {s: sum(r.state == s for r in trials) for s in ("complete", "pruned", "failed")}
        raise NoTrialFinished(f"no trial finished within the constraints ({states['complete']} complete but over a "
                              f"ceiling, {states['pruned']} pruned, {states['failed']} failed)",
                              "loosen the ceilings, widen the space or raise search.trials")
    return finished
