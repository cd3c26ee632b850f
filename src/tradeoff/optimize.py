"""One optimize run, top to bottom: baseline, study on validation, finalists verified on test, run directory."""

from __future__ import annotations

import hashlib
import json
import webbrowser
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

from tradeoff.config import QUANTIZATION_PASSES, ModelSpec, Settings, Task, load_task, task_from_dict
from tradeoff.data import DataBundle, load_data
from tradeoff.env import collect_env, int8_warning
from tradeoff.errors import ConfigError
from tradeoff.evaluation import Evaluator, Measurement, latency_entry
from tradeoff.huggingface import is_transformer
from tradeoff.measure import Latency, layer_stats
from tradeoff.metrics import Metric, get_metric
from tradeoff.model import ModelHandle, load_model
from tradeoff.passes import Context
from tradeoff.recipe import Recipe
from tradeoff.report.html import render_html
from tradeoff.report.schema import (
    Best,
    Binding,
    Finalist,
    LayerStat,
    Ratios,
    Report,
    Trial,
    Violation,
)
from tradeoff.rundir import RunDir, write_atomic, write_directory, write_json, write_yaml
from tradeoff.search.constraints import relative_miss, violations
from tradeoff.search.pareto import minimized, pareto_front, pareto_layers, pick_best
from tradeoff.search.space import default_space
from tradeoff.search.study import RecipeBuilder, counted_trials, open_study, run_study

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
            write_json(tmp / "metrics.json", self.measured.as_report().model_dump(mode="json"))

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
             **settings: Any) -> OptimizeResult:
    """Search for the cheapest model that keeps the metric within the constraints.

    Either a task (file path or `Task`), or a model (nn.Module, ModelHandle or .onnx path) with a `DataBundle`
    and the task file's settings as keywords (metric, preset, constraints, objectives, runtime, search, name).
    """
    if task is not None:
        if model is not None or data is not None or settings:
            raise ConfigError("optimize() takes either a task or model/data/settings, not both")
        search_dirs = (Path(task).resolve().parent,) if isinstance(task, (str, Path)) else ()
        task = load_task(task) if isinstance(task, (str, Path)) else task
        handle = load_model(task.model, search_dirs)
        return _run(handle, load_data(task.data), task, task.model_dump(mode="json"), Path(out), quiet)
    if model is None or data is None:
        raise ConfigError("optimize() needs a task, or both model= and data=")
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
    return _run(handle, data, resolved, record, Path(out), quiet)


def _run(model: ModelHandle, data: DataBundle, settings: Settings, record: dict[str, Any], out: Path,
         quiet: bool) -> OptimizeResult:
    threads, metric = settings.runtime.threads, get_metric(settings.metric)
    space = default_space(settings.search.passes or QUANTIZATION_PASSES, settings.runtime.target, model.format,
                          is_transformer(model))
    evaluator = Evaluator(model, data, metric, threads, settings.runtime.batch_sizes, settings.runtime.target)
    run_dir = RunDir(out / settings.name)
    env = {**collect_env(threads), "seeds": {"search": settings.search.seed, "data": data.spec.seed}}
    write_yaml(run_dir.task, record)
    write_json(run_dir.env, env)

    baseline_val = evaluator.measure(model, "val")
    ctx = Context(data=data, seed=settings.search.seed, threads=threads, teacher=model, metric=metric)
    storage = {"sqlite": run_dir.storage_url(), "memory": None}.get(settings.search.storage, settings.search.storage)
    study = open_study(settings, storage, _task_key(record))
    builder = RecipeBuilder(model, ctx)
    with _progress(settings.search.trials, counted_trials(study), quiet) as on_trial:
        run_study(study, settings, space, builder, evaluator, baseline_val, on_trial)

    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)  # not queued ones a resume will run
    trials = [_trial_entry(t, settings) for t in study.get_trials(deepcopy=False, states=finished)]
    for trial in trials:
        if trial.state != "skipped":
            write_yaml(run_dir.trial(trial.number) / "recipe.yaml", trial.recipe)
            write_json(run_dir.trial(trial.number) / "metrics.json", trial.model_dump(mode="json"))
    feasible = {t.number: minimized(settings.objectives, metric.higher_is_better,
                                    t.latency_ms.p50 if t.latency_ms else None, t.size_bytes,
                                    t.metric)  # type: ignore[arg-type]
                for t in trials if t.state == "complete" and t.feasible}
    front = pareto_front(feasible)

    baseline_test, candidates = _measure_on_test(model, pareto_layers(feasible, settings.search.finalists), trials,
                                                 builder, evaluator)
    finalists = [_finalist(number, candidate, settings, metric, baseline_test) for number, candidate in candidates]
    shipped = {f.trial: (f, c) for f, c in finalists if f.meets_constraints}
    if shipped:
        entry, best = shipped[pick_best({n: _test_objectives(c.measured, settings, metric)
                                         for n, (_, c) in shipped.items()})]
        binding = None
    else:
        entry, best = None, Candidate(model, Recipe(), baseline_test)
        binding = _binding(trials, [f for f, _ in finalists])
    best_dir = best.save(run_dir.best)

    warnings = [*data.notes, *(w for w in (int8_warning(env),) if w and INT8_PASSES & space.passes)]
    report = Report(
        name=settings.name, metric={"name": metric.name, "higher_is_better": metric.higher_is_better},
        objectives=list(settings.objectives), constraints=settings.constraints.model_dump(),
        baseline=baseline_test.as_report(), baseline_val=baseline_val.as_report(),
        best=Best(**best.measured.as_report().model_dump(), recipe=best.recipe.model_dump(mode="json"),
                  layers=[LayerStat(name=s.name, shape=list(s.shape), bits=s.bits, sparsity=s.sparsity)
                          for s in layer_stats(best.model)],
                  artifact=str(next(p.name for p in best_dir.iterdir() if p.name.startswith("model."))),
                  trial=entry.trial if entry else None, is_baseline=entry is None,
                  ratios=_ratios(baseline_test, best.measured, metric)),
        finalists=[f for f, _ in finalists], trials=trials, pareto=front, binding=binding, warnings=warnings,
        env=env, task=record,
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
def _progress(total: int, done: int, quiet: bool) -> Iterator[Callable[[optuna.trial.FrozenTrial], None]]:
    if quiet:
        yield lambda trial: None
        return
    columns = (TextColumn("[bold]search"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.description}"))
    with Progress(*columns, transient=False) as progress:
        bar = progress.add_task("", total=total, completed=done)

        def on_trial(trial: optuna.trial.FrozenTrial) -> None:
            recipe = " → ".join(s["pass"] for s in trial.user_attrs.get("recipe", {}).get("steps", [])) or "as is"
            progress.update(bar, advance=1, description=f"trial {trial.number}: {recipe} "
                                                        f"({trial.user_attrs.get('status')})")

        yield on_trial


def _trial_entry(trial: optuna.trial.FrozenTrial, settings: Settings) -> Trial:
    attrs = trial.user_attrs
    recipe = attrs.get("recipe", {"version": 1, "steps": []})
    status = attrs.get("status", "failed")
    latency = attrs.get("latency")
    latency_ms = latency_entry(Latency(**latency)) if latency else None  # the trial stored asdict(Latency)
    broken = (violations(settings.constraints, attrs["metric_drop"], latency_ms.p50 if latency_ms else None,
                         attrs.get("size_bytes")) if "metric_drop" in attrs else [])
    note = attrs.get("note") or ("interrupted; its parameters were queued again" if trial.state == TrialState.FAIL
                                 else None)
    return Trial(number=trial.number, recipe=recipe, passes=[s["pass"] for s in recipe["steps"]], state=status,
                 note=note, metric=attrs.get("metric"), metric_drop=attrs.get("metric_drop"), latency_ms=latency_ms,
                 size_bytes=attrs.get("size_bytes"), size_zstd_bytes=attrs.get("size_zstd_bytes"),
                 params=attrs.get("params"), nonzero_params=attrs.get("nonzero_params"), macs=attrs.get("macs"),
                 runtimes=attrs.get("runtimes", {}), feasible=status == "complete" and not broken, violations=broken)


def _test_objectives(measured: Measurement, settings: Settings, metric: Metric) -> tuple[float, ...]:
    latency = measured.primary_latency
    return minimized(settings.objectives, metric.higher_is_better, latency.p50_ms if latency else None,
                     measured.size.bytes, measured.metric)


def _ratios(baseline: Measurement, candidate: Measurement, metric: Metric) -> Ratios:
    base, cand = baseline.primary_latency, candidate.primary_latency
    return Ratios(speedup=base.p50_ms / cand.p50_ms if base and cand else 1.0,
                  size_reduction=baseline.size.bytes / candidate.size.bytes,
                  size_zstd_reduction=baseline.size.zstd_bytes / candidate.size.zstd_bytes,
                  metric_drop=metric.drop(baseline.metric, candidate.metric))


def _measure_on_test(model: ModelHandle, numbers: list[int], trials: list[Trial], builder: RecipeBuilder,
                     evaluator: Evaluator) -> tuple[Measurement, list[tuple[int, Candidate]]]:
    """The baseline and each front trial's recipe, rebuilt, measured on test in the same process, their latencies
    timed in interleaved rounds so that the speed-ups and the choice between finalists compare models, not
    moments of a drifting machine."""
    recipes = [Recipe.from_dict(next(t.recipe for t in trials if t.number == number)) for number in numbers]
    models = [model, *(builder.build(recipe) for recipe in recipes)]
    measured = [evaluator.measure(m, "test", timing=False) for m in models]
    timed = [replace(m, latency=latency) for m, latency in
             zip(measured, evaluator.interleaved_latency(models, "test"), strict=True)]
    return timed[0], [(number, Candidate(m, recipe, measurement)) for number, m, recipe, measurement
                      in zip(numbers, models[1:], recipes, timed[1:], strict=True)]


def _finalist(number: int, candidate: Candidate, settings: Settings, metric: Metric,
              baseline_test: Measurement) -> tuple[Finalist, Candidate]:
    measured = candidate.measured
    ratios = _ratios(baseline_test, measured, metric)
    latency = measured.primary_latency
    broken = violations(settings.constraints, ratios.metric_drop, latency.p50_ms if latency else None,
                        measured.size.bytes)
    finalist = Finalist(trial=number, recipe=candidate.recipe.model_dump(mode="json"), measured=measured.as_report(),
                        ratios=ratios, meets_constraints=not broken, violations=broken)
    return finalist, candidate


def _binding(trials: list[Trial], finalists: list[Finalist]) -> Binding:
    """The constraint that stopped every candidate, and the candidate that came nearest to meeting it."""
    if finalists:
        split, missed = "test", [(f.trial, f.violations) for f in finalists]
    else:
        split, missed = "val", [(t.number, t.violations) for t in trials if t.violations]
    if not missed:
        return Binding(constraint="no candidate could be built or measured", limit=0.0, nearest_trial=None,
                       nearest_value=None, missed_by=None, split="val")
    number, broken = min(missed, key=lambda item: max(relative_miss(v) for v in item[1]))
    worst: Violation = max(broken, key=relative_miss)
    return Binding(constraint=worst.constraint, limit=worst.limit, nearest_trial=number, nearest_value=worst.value,
                   missed_by=worst.missed_by, split=split)  # type: ignore[arg-type]
