"""Outside a search: replay a recipe, evaluate an artifact, re-render a report."""

from __future__ import annotations

import json
from pathlib import Path

from tradeoff.artifact import load_artifact
from tradeoff.config import Task
from tradeoff.data import load_data
from tradeoff.errors import ConfigError, ModelError
from tradeoff.evaluation import Evaluator, Measurement
from tradeoff.metrics import get_metric
from tradeoff.model import ModelHandle, load_model, load_onnx
from tradeoff.optimize import Candidate
from tradeoff.passes import Context
from tradeoff.recipe import Recipe
from tradeoff.report.html import render_html
from tradeoff.report.schema import Report
from tradeoff.rundir import write_atomic


def _evaluator(task: Task) -> tuple[ModelHandle, Evaluator]:
    model = load_model(task.model)
    data = load_data(task.data)
    evaluator = Evaluator(model, data, get_metric(task.metric), task.runtime.threads, task.runtime.batch_sizes)
    return model, evaluator


def replay(recipe_path: Path, task: Task, out: Path) -> Measurement:
    """Apply a recipe exactly as the search did (same seed, same calibration data) and save the artifact."""
    recipe = Recipe.load(recipe_path)
    model, evaluator = _evaluator(task)
    ctx = Context(data=evaluator.data, seed=task.search.seed, threads=task.runtime.threads, teacher=model,
                  metric=evaluator.metric)
    built = recipe.apply(model, ctx)
    measured = evaluator.measure(built, "test")
    Candidate(built, recipe, measured).save(out)
    return measured


def evaluate(task: Task, artifact: Path | None, split: str) -> Measurement:
    if split not in ("val", "test"):
        raise ConfigError(f"unknown split '{split}'", "use val or test")
    model, evaluator = _evaluator(task)
    if artifact is not None:
        if not artifact.exists():
            raise ModelError(f"model to evaluate not found: {artifact}", "check the --model path")
        if artifact.is_dir():
            model = load_artifact(artifact)
        elif artifact.suffix == ".onnx":
            model = load_onnx(artifact, task.model.output)
        else:
            raise ModelError(f"cannot evaluate {artifact}", "give an artifact folder (best/) or an .onnx file")
    return evaluator.measure(model, split)


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
