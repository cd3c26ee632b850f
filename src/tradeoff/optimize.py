"""One optimize run, top to bottom: baseline, study on validation, finalists verified on test, run directory.

The search (baseline, space, study, trials) is `search_recipes`, which `tradeoff worker` runs alone on a shared
study; `_run` adds the finalization that only `optimize` does, from every worker's trials."""

from __future__ import annotations

import json
import webbrowser
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import optuna

from tradeoff.config import SensitivitySpec, Task
from tradeoff.data import DataBundle
from tradeoff.env import collect_env, int8_warning
from tradeoff.evaluation import Evaluator, Measurement
from tradeoff.huggingface import is_transformer
from tradeoff.insight.cost import Spend, SpendMeter
from tradeoff.insight.sensitivity import Sensitivity, measure_sensitivity
from tradeoff.measure import layer_stats
from tradeoff.metrics import Metric, get_metric, near_chance_warnings
from tradeoff.model import ModelHandle
from tradeoff.model_card import model_card
from tradeoff.objectives import batches_read, violations
from tradeoff.passes import Context, load_plugins
from tradeoff.passes.known_recipes import recipes_to_try
from tradeoff.problem import GivenModel, Problem, Subject, problem
from tradeoff.recipe import Recipe
from tradeoff.report.build import measured, ratios, search_stats, spend_entry, trial_entry, violation_entry
from tradeoff.report.html import render_html
from tradeoff.report.schema import Best, Binding, Choice, Finalist, LayerStat, Report, RunSpend
from tradeoff.rundir import RunDir, write_atomic, write_directory, write_json, write_yaml
from tradeoff.runlog import trial_progress
from tradeoff.search.record import TrialRecord, records, task_key
from tradeoff.search.select import binding, choose, feasible_points, pareto_front, pareto_layers
from tradeoff.search.space import RecipeSpace, default_space, select_passes
from tradeoff.search.study import StudyRun, counted_trials, measure_on_validation, open_study, study_url
from tradeoff.search.tracking import mlflow_tracker
from tradeoff.serving import Shipping
from tradeoff.training import Trainer
from tradeoff.validation import validate

INT8_PASSES = {"quantize.dynamic", "quantize.static"}


@dataclass(frozen=True)
class Candidate:
    model: ModelHandle
    recipe: Recipe
    measured: Measurement
    shipping: Shipping | None = None  # what an application needs besides the artifact, once measured on test

    def save(self, directory: str | Path) -> Path:
        """Write the artifact, its recipe and its test metrics atomically, with a MANIFEST of checksums; with the
        predictor's spec, the tokenizer and the model card where the run added them (`tradeoff.load` reads them)."""

        def fill(tmp: Path) -> None:
            self.model.save(tmp)
            (tmp / "recipe.yaml").write_text(self.recipe.to_yaml())
            write_json(tmp / "metrics.json", measured(self.measured).model_dump(mode="json"))
            if self.shipping is not None:
                self.shipping.write(tmp)

        return write_directory(Path(directory), fill)


@dataclass(frozen=True)
class ReportFiles:
    data: Report
    json_path: Path
    html_path: Path

    def open(self) -> None:
        webbrowser.open(self.html_path.resolve().as_uri())


@dataclass(frozen=True)
class OptimizeResult:
    best: Candidate
    baseline: Measurement
    report: ReportFiles
    run_dir: Path


def optimize(subject: Subject | None = None, /, *, task: Task | str | Path | None = None,
             model: GivenModel | None = None, data: DataBundle | None = None, out: str | Path = "runs",
             quiet: bool = False, space: Mapping[str, Any] | None = None, storage: str | None = None,
             debug: bool = False, **settings: Any) -> OptimizeResult:
    """Search for the cheapest model that keeps the metric within the constraints.

    The first argument (or `task=` / `model=`) is a task (file path or `Task`) or a model (nn.Module, ModelHandle,
    .onnx file or artifact folder); a model comes with a `DataBundle` as `data=` and the task file's settings as
    keywords (metric, preset, constraints, objectives, runtime, search, name). `space` is the task file's
    `search.space`: ranges that replace the passes' own, by `stage__option`. `storage` replaces `search.storage`:
    with the URL of a study that `tradeoff worker` processes share, this run measures what is left of its budget
    and finalizes from every worker's trials. With `debug`, a candidate that fails raises instead of being recorded
    as a failed trial.
    """
    with SpendMeter() as meter:  # what the whole run cost, loading the model and data included
        given = problem(subject, task=task, model=model, data=data, where="optimize()", **settings)
        update: dict[str, Any] = {"space": dict(space)} if space is not None else {}
        update |= {"storage": storage} if storage is not None else {}
        if update:
            search = given.settings.search.model_copy(update=update)
            given = replace(given, settings=given.settings.model_copy(update={"search": search}))
        return _run(given, Path(out), quiet, debug, meter)


@dataclass(frozen=True)
class Search:
    """What the search phase leaves for finalization: the study holding every worker's trials, and what measured
    them here."""

    study: optuna.Study
    space: RecipeSpace
    ctx: Context
    evaluator: Evaluator
    baseline_val: Measurement  # on validation, untimed (each trial times the baseline beside it)
    baseline_spend: Spend  # what measuring it cost
    sensitivity: Sensitivity | None  # per layer, where the task asked for it


def search_recipes(given: Problem, run_dir: RunDir | None, quiet: bool, debug: bool = False,
                   joining: str = "resuming the search") -> Search:
    """The search phase that `optimize` and `tradeoff worker` share: the space, the baseline measured on validation,
    the study (created or joined) and this process's trials, until the study's budget (counted over every worker)
    or this process's time budget is spent.

    The baseline is measured here, untimed: each trial times it in the same rounds as its candidate, stores the
    latency in ms and as the ratio to the baseline, and the sampler is told the ratio, so workers on machines of
    different speeds, and trials in slow and fast spells of one machine, compare fairly. (Finalization times the
    finalists again, interleaved with the baseline, on one machine.) The study lives where `search.storage` says
    (`run_dir` None: a worker, whose storage is a shared URL); `joining` is what a progress display says when the
    study has trials already.
    """
    model, data, settings = given.model, given.data, given.settings
    threads, metric = settings.runtime.threads, get_metric(settings.metric, given.search_dirs)
    load_plugins(settings.search.plugins, given.search_dirs)
    search = settings.search
    trackers = [mlflow_tracker(search.mlflow, settings, metric.higher_is_better)] if search.mlflow else []
    start = frozenset({model.format, *(("transformer",) if is_transformer(model) else ())})
    space = default_space(select_passes(search.passes, search.tags, search.exclude_tags), settings.runtime.target,
                          start, search.space)
    first = [validate(Recipe, {"steps": steps}, "search.try_first") for steps in recipes_to_try(search.try_first)]
    evaluator = Evaluator(model, data, metric, threads, settings.runtime.batch_sizes, settings.runtime.target,
                          settings.cost, batches_read(settings.objectives, settings.runtime.batch_sizes),
                          timing_s=settings.runtime.timing_s)
    with SpendMeter() as meter:
        baseline_val = evaluator.measure(model, "val", timing=False)
    study = open_study(settings, study_url(search.storage, run_dir), task_key(given.record))
    ctx = Context(data=data, seed=search.seed, threads=threads, teacher=model, metric=metric,
                  trainer=Trainer(settings.train))
    sensitivity = None
    if search.sensitivity is not None:
        sensitivity = layer_sensitivity(model, evaluator, ctx, search.sensitivity, run_dir, quiet)
        if search.sensitivity.guide:
            space = space.guided(sensitivity.rankings(), search.sensitivity.max_kept)
    space, outside = space.trying_first(first)
    for recipe in outside:  # a preset's hint that does not suit this model is not worth a warning: the log says it
        print(f"search.try_first: {' -> '.join(recipe.passes)} is outside this search's passes or ranges; not tried")
    with trial_progress(search.trials, counted_trials(study), quiet, _passes, joining) as (on_trial, on_status):

        def on_counted(record: TrialRecord) -> None:
            on_trial(record)
            _keep_contenders(study, space, search.finalists)

        StudyRun(study, space, replace(ctx, progress=on_status),
                 lambda built: measure_on_validation(built, evaluator, baseline_val,
                                                     settings.constraints.max_metric_drop),
                 settings, metric.higher_is_better, on_counted, debug, trackers=trackers).run()
    return Search(study, space, ctx, evaluator, baseline_val, meter.stop(), sensitivity)


def _finished(study: optuna.Study) -> list[TrialRecord]:
    """The study's trials less the running ones: another worker's live trial is not ours to report or keep."""
    return [r for r in records(study) if r.state != "running"]


def _keep_contenders(study: optuna.Study, space: RecipeSpace, finalists: int) -> None:
    """Have the space hold the built models of the trials that would be finalists now: finalization times them
    without building them again (a trial built by another worker, or before a resume, is built again)."""
    finished = _finished(study)
    contenders = set(pareto_layers(feasible_points(finished), finalists))
    space.keep(Recipe.from_dict(r.candidate) for r in finished if r.number in contenders and r.candidate)


def layer_sensitivity(model: ModelHandle, evaluator: Evaluator, ctx: Context, spec: SensitivitySpec,
                      run_dir: RunDir | None, quiet: bool) -> Sensitivity:
    """Per-layer sensitivity measured once per run (read back when the run resumes; a worker measures its own, the
    same: it is deterministic on validation) and kept in the run directory."""
    if run_dir is not None and run_dir.sensitivity_json.is_file():
        return Sensitivity.from_dict(json.loads(run_dir.sensitivity_json.read_text()))
    found = measure_sensitivity(model, evaluator, ctx, spec, quiet)
    if run_dir is not None:
        write_json(run_dir.sensitivity_json, found.as_dict())
    return found


def _run(given: Problem, out: Path, quiet: bool, debug: bool, meter: SpendMeter) -> OptimizeResult:
    """The run; `meter` has counted what it cost since the model and data began loading."""
    model, data, settings, record = given.model, given.data, given.settings, given.record
    search, first_batch = settings.search, settings.runtime.batch_sizes[0]
    run_dir = RunDir(out / settings.name)
    env = {**collect_env(settings.runtime.threads), "seeds": {"search": search.seed, "data": data.spec.seed},
           "import_dirs": [str(d) for d in given.search_dirs]}  # where the task's code is found, to load it again
    write_yaml(run_dir.task, record)
    write_json(run_dir.env, env)
    searched = search_recipes(given, run_dir, quiet, debug)
    study, space, ctx, evaluator = searched.study, searched.space, searched.ctx, searched.evaluator
    metric = evaluator.metric

    limits = settings.constraints.model_dump()
    trials = _finished(study)
    listed = [r for r in trials if r.counted]  # the samples that spent no budget are only counted (search_stats)
    entries = [trial_entry(r, limits, first_batch, settings.cost.watts_per_core) for r in listed]
    for found, trial in zip(listed, entries, strict=True):
        write_yaml(run_dir.trial(trial.number) / "recipe.yaml", trial.recipe)
        write_json(run_dir.trial(trial.number) / "metrics.json", trial.model_dump(mode="json"))
        if found.error is not None:
            write_atomic(run_dir.trial_error(trial.number), found.error)
    points = feasible_points(trials)
    baseline_val, finalists = _retime_on_validation(model, space, ctx, pareto_layers(points, search.finalists),
                                                    trials, evaluator, searched.baseline_val)
    values = {n: c.measured.values(metric_drop=metric.drop(baseline_val.metric, c.measured.metric),
                                   baseline=baseline_val) for n, c in finalists.items()}
    choice = choose(values, baseline_val.values(), settings.objectives, limits, first_batch, metric.higher_is_better)
    chosen = finalists[choice.trial] if choice.trial is not None else None
    best, baseline_test = _measure_on_test(model, chosen, evaluator)
    test_broken = violations(limits, best.measured.values(
        metric_drop=metric.drop(baseline_test.metric, best.measured.metric), baseline=baseline_test),
        first_batch) if chosen else []
    bound = binding(trials, limits, first_batch) if not finalists else None
    best = replace(best, shipping=_shipping(given, best, baseline_test, metric, env))
    best_dir = best.save(run_dir.best)

    warnings = [*data.notes, *near_chance_warnings(metric, baseline_val.metric, data.val.y),
                *(w for w in (int8_warning(env),) if w and INT8_PASSES & space.passes)]
    report = Report(
        name=settings.name, metric={"name": metric.name, "higher_is_better": metric.higher_is_better},
        objectives=settings.objectives if isinstance(settings.objectives, dict) else list(settings.objectives),
        constraints=limits,
        baseline=measured(baseline_test), baseline_val=measured(baseline_val),
        best=Best(**measured(best.measured).model_dump(), recipe=best.recipe.as_dict(),
                  layers=[LayerStat(name=s.name, shape=list(s.shape), bits=s.bits, sparsity=s.sparsity)
                          for s in layer_stats(best.model)],
                  artifact=str(next(p.name for p in best_dir.iterdir() if p.name.startswith("model."))),
                  trial=choice.trial, is_baseline=choice.trial is None,
                  ratios=ratios(baseline_test, best.measured, metric),
                  test_violations=[violation_entry(v) for v in test_broken]),
        choice=Choice(rule=choice.rule, excluded=choice.excluded),
        finalists=[_finalist(n, c, values[n], limits, first_batch, metric, baseline_val, choice.excluded.get(n))
                   for n, c in finalists.items()],
        trials=entries, search_stats=search_stats(trials), pareto=pareto_front(points),
        binding=Binding(**asdict(bound)) if bound else None, warnings=warnings, env=env, task=record,
        sensitivity=searched.sensitivity.as_dict() if searched.sensitivity else None,
        spend=RunSpend(baseline=spend_entry(searched.baseline_spend, settings.cost.watts_per_core),
                       run=spend_entry(meter.stop(), settings.cost.watts_per_core)),
    )
    write_json(run_dir.report_json, report.model_dump(mode="json"))
    write_atomic(run_dir.report_html, render_html(report))
    files = ReportFiles(data=report, json_path=run_dir.report_json, html_path=run_dir.report_html)
    return OptimizeResult(best=best, baseline=baseline_test, report=files, run_dir=run_dir.root)


def _shipping(given: Problem, best: Candidate, baseline_test: Measurement, metric: Metric,
              env: dict[str, Any]) -> Shipping:
    """What best/ needs to be used without the task and its data: the inputs as the data defined them, the
    tokenizer of a text model, and the model card."""
    settings = given.settings
    shipping = Shipping.of(given.data, best.model.threads_within(settings.runtime.threads), given.search_dirs)
    return replace(shipping, card=model_card(settings.name, given.record.get("model", {}), best.recipe, best.measured,
                                             baseline_test, metric.name, env, shipping.spec, best.model))


def _passes(record: TrialRecord) -> str:
    return " → ".join(s["pass"] for s in (record.candidate or {}).get("steps", [])) or "as is"


def _retime_on_validation(model: ModelHandle, space: RecipeSpace, ctx: Context, numbers: list[int],
                          trials: list[TrialRecord], evaluator: Evaluator,
                          baseline_val: Measurement) -> tuple[Measurement, dict[int, Candidate]]:
    """The baseline and each finalist's recipe, rebuilt, measured on validation, their latencies timed in
    interleaved rounds: the choice compares models rather than the moments of a drifting machine at which the
    search happened to time them, and the baseline is timed like the rest instead of once, cold, at the start."""
    by_number = {r.number: r for r in trials}
    recipes = [Recipe.from_dict({**(by_number[n].candidate or {}), "runtime": by_number[n].runtime,
                                 "threads": by_number[n].threads}) for n in numbers]
    models = [space.build(recipe, ctx) for recipe in recipes]
    timed = evaluator.interleaved_latency([model, *models], "val")
    candidates = {number: Candidate(m, recipe, replace(evaluator.measure(m, "val", timing=False), latency=latency))
                  for number, m, recipe, latency in zip(numbers, models, recipes, timed[1:], strict=True)}
    return replace(baseline_val, latency=timed[0]), candidates


def _measure_on_test(model: ModelHandle, chosen: Candidate | None,
                     evaluator: Evaluator) -> tuple[Candidate, Measurement]:
    """The chosen model (or the baseline when none was) and the baseline, measured once on test for the report,
    their latencies timed in interleaved rounds."""
    models = [model, *([chosen.model] if chosen else [])]
    timed = [replace(evaluator.measure(m, "test", timing=False), latency=latency)
             for m, latency in zip(models, evaluator.interleaved_latency(models, "test"), strict=True)]
    return Candidate(models[-1], chosen.recipe if chosen else Recipe(), timed[-1]), timed[0]


def _finalist(number: int, candidate: Candidate, values: dict[str, float | None], limits: dict[str, float | None],
              first_batch: int, metric: Metric, baseline_val: Measurement, excluded: str | None) -> Finalist:
    broken = violations(limits, values, first_batch)
    return Finalist(trial=number, recipe=candidate.recipe.as_dict(), measured=measured(candidate.measured),
                    ratios=ratios(baseline_val, candidate.measured, metric), meets_constraints=not broken,
                    violations=[violation_entry(v) for v in broken], excluded=excluded)
