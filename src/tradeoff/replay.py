"""Outside a search: replay a recipe (`apply`), measure any model (`evaluate`), re-render a report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tradeoff.config import Task
from tradeoff.data import DataBundle
from tradeoff.errors import ConfigError
from tradeoff.evaluation import Evaluator, Measurement
from tradeoff.metrics import get_metric
from tradeoff.optimize import Candidate
from tradeoff.passes import Context, load_plugins
from tradeoff.problem import GivenModel, Problem, Subject, is_task, load_given_model, problem
from tradeoff.recipe import Recipe
from tradeoff.report.html import render_html
from tradeoff.report.schema import Report
from tradeoff.rundir import write_atomic
from tradeoff.serving import Shipping
from tradeoff.training import Trainer

SPLITS = ("val", "test")


def _evaluator(given: Problem) -> Evaluator:
    """Measures models as the search does, the given model being the reference of fidelity metrics."""
    settings = given.settings
    return Evaluator(given.model, given.data, get_metric(settings.metric, given.search_dirs),
                     settings.runtime.threads, settings.runtime.batch_sizes, cost=settings.cost,
                     timing_s=settings.runtime.timing_s)


def apply(recipe: Recipe | str | Path, subject: Subject | None = None, /, *, task: Task | str | Path | None = None,
          model: GivenModel | None = None, data: DataBundle | None = None, out: str | Path | None = None,
          **settings: Any) -> Candidate:
    """Apply a recipe (a recipe.yaml or a `Recipe`) to a task's model, or to a model with `data=` and settings,
    exactly as the search did (same seed, same calibration data); measure the result on test and, with `out`, save
    it as an artifact folder."""
    recipe = recipe if isinstance(recipe, Recipe) else Recipe.load(Path(recipe))
    given = problem(subject, task=task, model=model, data=data, where="apply()", **settings)
    load_plugins(given.settings.search.plugins, given.search_dirs)
    evaluator = _evaluator(given)
    ctx = Context(data=given.data, seed=given.settings.search.seed, threads=given.settings.runtime.threads,
                  teacher=given.model, metric=evaluator.metric, trainer=Trainer(given.settings.train))
    built = recipe.apply(given.model, ctx)
    candidate = Candidate(built, recipe, evaluator.measure(built, "test"),
                          Shipping.of(given.data, built.threads_within(given.settings.runtime.threads),
                                      given.search_dirs))
    if out is not None:
        candidate.save(Path(out))
    return candidate


def evaluate(subject: Subject | None = None, /, *, model: GivenModel | None = None, data: DataBundle | None = None,
             split: str = "test", **settings: Any) -> Measurement:
    """Metric, latency, size and compute of a model, measured as the search measures them.

    With a task first, the task's own model, or `model` (an artifact folder, an .onnx file, a module) on the task's
    data, the task's model staying the reference of fidelity metrics; with a model first (or `model=` alone),
    that model on `data=` with the task file's settings as keywords.
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown split '{split}'", f"use {' or '.join(SPLITS)}")
    on_task = is_task(subject) and model is not None
    given = problem(subject, model=None if on_task else model, data=data, where="evaluate()", **settings)
    measured = (load_given_model(model, given.search_dirs, given.settings.model.output)[0]  # type: ignore[arg-type, attr-defined]
                if on_task else given.model)
    return _evaluator(given).measure(measured, split)


def rerender(run_dir: Path) -> Path:
    source = run_dir / "report.json"
    if not source.is_file():
        raise ConfigError(f"no report.json in {run_dir}", "point to a run directory written by tradeoff optimize")
    raw = json.loads(source.read_text())
    if isinstance(raw, dict) and raw.get("schema_version") != Report.model_fields["schema_version"].default:
        raise ConfigError(f"{source} is report.json schema {raw.get('schema_version')}, which this tradeoff does "
                          "not render", "run tradeoff optimize again to write the report in the current schema")
    report = Report.model_validate(raw)
    target = run_dir / "report.html"
    write_atomic(target, render_html(report))
    return target
