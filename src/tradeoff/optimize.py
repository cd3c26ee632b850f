"""One optimize run, top to bottom: baseline, study on validation, finalists verified on test, run directory."""

from __future__ import annotations

import hashlib
import itertools
import json
import webbrowser
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

from tradeoff.config import ModelSpec, Settings, Task, load_task, task_from_dict
from tradeoff.data import DataBundle, load_data
from tradeoff.env import collect_env, int8_warning
from tradeoff.errors import ConfigError
from tradeoff.evaluation import Evaluator, Measurement
from tradeoff.huggingface import is_transformer
from tradeoff.measure import layer_stats
from tradeoff.metrics import Metric, get_metric
from tradeoff.model import ModelHandle, load_model
from tradeoff.objectives import Violation, minimized, violations
from tradeoff.passes import Context, load_plugins
from tradeoff.recipe import Recipe
from tradeoff.report.build import measured, ratios, search_stats, trial_entry, violation_entry
from tradeoff.report.html import render_html
from tradeoff.report.schema import Best, Binding, Finalist, LayerStat, Report
from tradeoff.rundir import RunDir, write_atomic, write_directory, write_json, write_yaml
from tradeoff.runlog import terminal
from tradeoff.search.record import TrialRecord, records
from tradeoff.search.select import binding, feasible_points, pareto_front, pareto_layers, pick_best
from tradeoff.search.space import RecipeSpace, default_space, select_passes
from tradeoff.search.study import StudyRun, counted_trials, measure_on_validation, open_study

INT8_PASSES = {"quantize.dynamic", "quantize.static"}


@dataclass(frozen=True)
class Candidate:
    model: ModelHandle
    recipe: Recipe
    measured: Measurement

    def save(self, directory: str | Path) -> Path:
        """Write the artifact, its recipe and its test metrics atomically, with a MANIFEST of checksums."""

        def fill(tmp: Path) -> None:
            self.model.save(tmp)
            (tmp / "recipe.yaml").write_text(self.recipe.to_yaml())
            write_json(tmp / "metrics.json", measured(self.measured).model_dump(mode="json"))

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


def optimize(task: Task | str | Path | None = None, *, model: nn.Module | ModelHandle | str | Path | None = None,
             data: DataBundle | None = None, out: str | Path = "runs", quiet: bool = False,
             space: Mapping[str, Any] | None = None, debug: bool = False, **settings: Any) -> OptimizeResult:
    """Search for the cheapest model that keeps the metric within the constraints.

    Either a task (file path or `Task`), or a model (nn.Module, ModelHandle or .onnx path) with a `DataBundle`
    and the task file's settings as keywords (metric, preset, constraints, objectives, runtime, search, name).
    `space` is the task file's `search.space`: ranges that replace the passes' own, by `stage__option`.
    With `debug`, a candidate that fails raises instead of being recorded as a failed trial.
    """
    if task is not None:
        if model is not None or data is not None or settings:
            raise ConfigError("optimize() takes either a task or model/data/settings, not both")
        search_dirs = (Path(task).resolve().parent,) if isinstance(task, (str, Path)) else ()
        task = load_task(task) if isinstance(task, (str, Path)) else task
        if space is not None:
            task = task.model_copy(update={"search": task.search.model_copy(update={"space": dict(space)})})
        handle = load_model(task.model, search_dirs)
        return _run(handle, load_data(task.data), task, task.model_dump(mode="json"), Path(out), quiet, search_dirs,
                    debug)
    if model is None or data is None:
        raise ConfigError("optimize() needs a task, or both model= and data=")
    if space is not None:
        settings = {**settings, "search": {**settings.get("search", {}), "space": dict(space)}}
    resolved = task_from_dict(settings, where="optimize()", model=Settings)
    if isinstance(model, nn.Module):
        handle = ModelHandle(module=model.eval())
        described: dict[str, Any] = {"source": "python", "class": f"{type(model).__module__}.{type(model).__name__}"}
    elif isinstance(model, ModelHandle):
        handle, described = model, {"source": "python", "format": model.format}
    else:
        handle = load_model(ModelSpec(source="onnx", path=Path(model)))
        described = {"source": "onnx", "path": str(model)}
    record = {**resolved.model_dump(mode="json"), "model": described, "data": data.spec.model_dump(mode="json")}
    return _run(handle, data, resolved, record, Path(out), quiet, debug=debug)


def _run(model: ModelHandle, data: DataBundle, settings: Settings, record: dict[str, Any], out: Path,
         quiet: bool, search_dirs: tuple[Path, ...] = (), debug: bool = False) -> OptimizeResult:
    threads, metric = settings.runtime.threads, get_metric(settings.metric)
    first_batch = settings.runtime.batch_sizes[0]
    load_plugins(settings.search.plugins, search_dirs)
    search = settings.search
    start = frozenset({model.format, *(("transformer",) if is_transformer(model) else ())})
    space = default_space(select_passes(search.passes, search.tags, search.exclude_tags), settings.runtime.target,
                          start, search.space)
    evaluator = Evaluator(model, data, metric, threads, settings.runtime.batch_sizes, settings.runtime.target)
    run_dir = RunDir(out / settings.name)
    env = {**collect_env(threads), "seeds": {"search": search.seed, "data": data.spec.seed}}
    write_yaml(run_dir.task, record)
    write_json(run_dir.env, env)

    baseline_val = evaluator.measure(model, "val")
    storage = {"sqlite": run_dir.storage_url(), "memory": None}.get(search.storage, search.storage)
    study = open_study(settings, storage, _task_key(record))
    ctx = Context(data=data, seed=search.seed, threads=threads, teacher=model, metric=metric)
    with _progress(search.trials, counted_trials(study), quiet) as (on_trial, on_status):
        StudyRun(study, space, replace(ctx, progress=on_status),
                 lambda built: measure_on_validation(built, evaluator, baseline_val,
                                                     settings.constraints.max_metric_drop),
                 settings, metric.higher_is_better, on_trial, debug).run()

    limits = settings.constraints.model_dump()
    trials = [r for r in records(study) if r.state != "running"]  # another worker's live trial is not ours to report
    listed = [r for r in trials if r.counted]  # the samples that spent no budget are only counted (search_stats)
    entries = [trial_entry(r, limits, first_batch) for r in listed]
    for found, trial in zip(listed, entries, strict=True):
        write_yaml(run_dir.trial(trial.number) / "recipe.yaml", trial.recipe)
        write_json(run_dir.trial(trial.number) / "metrics.json", trial.model_dump(mode="json"))
        if found.error is not None:
            write_atomic(run_dir.trial_error(trial.number), found.error)
    points = feasible_points(trials)
    baseline_test, candidates = _measure_on_test(model, space, ctx, pareto_layers(points, search.finalists), trials,
                                                 evaluator)
    finalists = [_finalist(number, candidate, limits, first_batch, metric, baseline_test)
                 for number, candidate in candidates]
    shipped = {f.trial: (f, c) for f, c, broken in finalists if not broken}
    if shipped:
        entry, best = shipped[pick_best({n: _test_objectives(c.measured, baseline_test, settings, metric)
                                         for n, (_, c) in shipped.items()})]
        bound = None
    else:
        entry, best = None, Candidate(model, Recipe(), baseline_test)
        bound = binding(trials, [(f.trial, broken) for f, _, broken in finalists], limits, first_batch)
    best_dir = best.save(run_dir.best)

    warnings = [*data.notes, *(w for w in (int8_warning(env),) if w and INT8_PASSES & space.passes)]
    report = Report(
        name=settings.name, metric={"name": metric.name, "higher_is_better": metric.higher_is_better},
        objectives=list(settings.objectives), constraints=limits,
        baseline=measured(baseline_test), baseline_val=measured(baseline_val),
        best=Best(**measured(best.measured).model_dump(), recipe=best.recipe.as_dict(),
                  layers=[LayerStat(name=s.name, shape=list(s.shape), bits=s.bits, sparsity=s.sparsity)
                          for s in layer_stats(best.model)],
                  artifact=str(next(p.name for p in best_dir.iterdir() if p.name.startswith("model."))),
                  trial=entry.trial if entry else None, is_baseline=entry is None,
                  ratios=ratios(baseline_test, best.measured, metric)),
        finalists=[f for f, _, _ in finalists], trials=entries, search_stats=search_stats(trials),
        pareto=pareto_front(points),
        binding=Binding(**asdict(bound)) if bound else None, warnings=warnings, env=env, task=record,
    )
    write_json(run_dir.report_json, report.model_dump(mode="json"))
    write_atomic(run_dir.report_html, render_html(report))
    files = ReportFiles(data=report, json_path=run_dir.report_json, html_path=run_dir.report_html)
    return OptimizeResult(best=best, baseline=baseline_test, report=files, run_dir=run_dir.root)


def _task_key(record: dict[str, Any]) -> str:
    """What must not change between a killed run and its resumption: all but the search's budgets."""
    search = {k: v for k, v in record.get("search", {}).items() if k not in ("trials", "timeout_s", "finalists")}
    return hashlib.sha256(json.dumps({**record, "search": search}, sort_keys=True).encode()).hexdigest()


@contextmanager
def _progress(total: int, done: int, quiet: bool) -> Iterator[tuple[Callable[[TrialRecord], None],
                                                                     Callable[[str], None]]]:
    """A callback per finished trial (the bar advances) and one for what the current trial is doing. A resumed
    study says so first; without a terminal (CI, nohup) each finished trial is one plain line instead of a bar."""
    if quiet:
        yield (lambda record: None), (lambda status: None)
        return
    console = Console(file=terminal(), highlight=False, soft_wrap=True)
    if done:
        console.print(f"resuming the search: {done} of {total} trials already measured", markup=False)
    if not console.is_terminal:
        finished = itertools.count(done + 1)

        def line(record: TrialRecord) -> None:
            note = f": {record.note}" if record.note else ""
            console.print(f"trial {record.number} ({next(finished)}/{total}): {_passes(record)} ({record.state}{note})",
                          markup=False)

        yield line, (lambda status: None)
        return
    columns = (TextColumn("[bold]search"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.description}"))
    # rich would route sys.stdout and sys.stderr above the bar, the libraries' prints too: those stay in the log
    with Progress(*columns, console=console, transient=False, redirect_stdout=False, redirect_stderr=False) as progress:
        bar = progress.add_task("", total=total, completed=done)

        def on_trial(record: TrialRecord) -> None:
            progress.update(bar, advance=1, description=f"trial {record.number}: {_passes(record)} ({record.state})")

        def on_status(status: str) -> None:
            progress.update(bar, description=status)

        yield on_trial, on_status


def _passes(record: TrialRecord) -> str:
    return " → ".join(s["pass"] for s in (record.candidate or {}).get("steps", [])) or "as is"


def _test_objectives(candidate: Measurement, baseline: Measurement, settings: Settings,
                     metric: Metric) -> tuple[float, ...]:
    values = candidate.values(metric_drop=metric.drop(baseline.metric, candidate.metric))
    return minimized(settings.objectives, values, settings.runtime.batch_sizes[0], metric.higher_is_better)


def _measure_on_test(model: ModelHandle, space: RecipeSpace, ctx: Context, numbers: list[int],
                     trials: list[TrialRecord],
                     evaluator: Evaluator) -> tuple[Measurement, list[tuple[int, Candidate]]]:
    """The baseline and each front trial's recipe, rebuilt, measured on test in the same process, their latencies
    timed in interleaved rounds so that the speed-ups and the choice between finalists compare models, not
    moments of a drifting machine."""
    by_number = {r.number: r for r in trials}
    recipes = [Recipe.from_dict({**(by_number[n].candidate or {}), "runtime": by_number[n].runtime})
               for n in numbers]
    models = [model, *(space.build(recipe, ctx) for recipe in recipes)]
    measured = [evaluator.measure(m, "test", timing=False) for m in models]
    timed = [replace(m, latency=latency) for m, latency in
             zip(measured, evaluator.interleaved_latency(models, "test"), strict=True)]
    return timed[0], [(number, Candidate(m, recipe, measurement)) for number, m, recipe, measurement
                      in zip(numbers, models[1:], recipes, timed[1:], strict=True)]


def _finalist(number: int, candidate: Candidate, limits: dict[str, float | None], first_batch: int, metric: Metric,
              baseline_test: Measurement) -> tuple[Finalist, Candidate, list[Violation]]:
    drop = metric.drop(baseline_test.metric, candidate.measured.metric)
    broken = violations(limits, candidate.measured.values(metric_drop=drop), first_batch)
    finalist = Finalist(trial=number, recipe=candidate.recipe.as_dict(), measured=measured(candidate.measured),
                        ratios=ratios(baseline_test, candidate.measured, metric), meets_constraints=not broken,
                        violations=[violation_entry(v) for v in broken])
    return finalist, candidate, broken
