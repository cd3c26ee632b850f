"""`tradeoff explain runs/<name>`: does the optimized model still decide as the original did, and for the same
reasons? Surrogate rules of each model with their fidelity, and the agreement of their attributions; written to
explain.json and explain.html in the run directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from tradeoff.data import DataBundle
from tradeoff.errors import DataError, ModelError
from tradeoff.insight.attributions import Attributed, Attributions, compare, sample
from tradeoff.insight.rules import LOW_FIDELITY, Predict, Surrogate, feature_names, fit_surrogates
from tradeoff.insight.run import load_run
from tradeoff.rundir import write_atomic, write_json


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelRules(_Frozen):
    model: Literal["original", "optimized"]
    format: Literal["torch", "onnx"]
    surrogates: tuple[Surrogate, ...]  # the decision tree, then the rule list


class Explanation(_Frozen):
    """What explain.json holds: every figure explain.html and the terminal show."""

    name: str
    classes: int
    features: tuple[str, ...]
    test_samples: int  # the fidelity's denominator
    models: tuple[ModelRules, ...]  # the original, then the optimized (best/)
    attributions: Attributions
    notes: tuple[str, ...]  # what a reader must know before trusting a figure (low fidelity, no ranking)


def explain(run_dir: str | Path, task: str | Path | None = None) -> Explanation:
    """Explain the classifier an optimize run started from and the one it shipped; write explain.json and
    explain.html into `run_dir`. `task`: the task file, where the run was given Python objects."""
    from tradeoff.report.explain import render_explanation

    run = load_run(run_dir, task)
    data = run.original.data
    handles = {"original": run.original.model, "optimized": run.optimized}
    runners = {name: run.runner(handle) for name, handle in handles.items()}
    classes = _classes(data, runners["original"](data.val.x), run.run_dir.root)
    models = tuple(ModelRules(model=name, format=handle.format,  # type: ignore[arg-type]
                              surrogates=fit_surrogates(_predicted_class(runners[name]), data))
                   for name, handle in handles.items())
    names = feature_names(data)
    original, optimized = (Attributed(name, handles[name], runners[name]) for name in handles)
    attributions = compare(original, optimized, sample(data.test.x, data.spec.seed), data.train.x.mean(axis=0), names)
    explanation = Explanation(name=run.report.name, classes=classes, features=names, test_samples=len(data.test),
                              models=models, attributions=attributions, notes=_notes(models, attributions))
    write_json(run.run_dir.explain_json, explanation.model_dump(mode="json"))
    write_atomic(run.run_dir.explain_html, render_explanation(explanation))
    return explanation


def _predicted_class(run: Callable[[np.ndarray], np.ndarray]) -> Predict:
    return lambda x: run(x).argmax(axis=1)


def _classes(data: DataBundle, outputs: np.ndarray, root: Path) -> int:
    """The number of classes of a classifier on numeric features; one line naming the problem for anything else."""
    if data.train.x.dtype.names is not None or not np.issubdtype(data.train.x.dtype, np.floating):
        raise DataError(f"explain reads numeric features (tables, images); {root} reads {data.train.x.dtype} inputs "
                        "(text tokens)", "explain a run on tabular or image data")
    targets = data.train.y
    labelled = data.labelled and np.issubdtype(targets.dtype, np.integer)
    if outputs.ndim != 2 or outputs.shape[1] < 2 or not labelled or targets.max() >= outputs.shape[1]:
        raise ModelError(f"explain needs a classifier; {root}'s model gives outputs of shape {list(outputs.shape[1:])} "
                         f"per sample on {'labelled' if data.labelled else 'unlabelled'} data (embeddings or a "
                         "regression have no classes for rules to name)", "explain a classification run")
    return int(outputs.shape[1])


def _notes(models: tuple[ModelRules, ...], attributions: Attributions) -> tuple[str, ...]:
    notes = [f"the {m.model} model's {s.kind} agrees with it on {100 * s.fidelity:.1f}% of test samples (under "
             f"{100 * LOW_FIDELITY:.0f}%): its rules sketch the network, they are not its logic"
             for m in models for s in m.surrogates if s.low_fidelity]
    if attributions.spearman is None:
        notes.append("a model's attributions are equal on every feature, so their ranks cannot be compared")
    return tuple(notes)
