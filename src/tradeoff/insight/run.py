"""An optimize run read back for the questions asked after it (explain, monitor): the original model, its data and
settings as the run recorded them, and the model it shipped."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tradeoff.artifact import load_artifact
from tradeoff.config import Task, load_task, task_from_dict
from tradeoff.data import Split
from tradeoff.errors import ConfigError
from tradeoff.evaluation import predict
from tradeoff.model import ModelHandle
from tradeoff.problem import Problem, problem
from tradeoff.report.schema import Report
from tradeoff.rundir import RunDir
from tradeoff.runtimes import runtime_for
from tradeoff.validation import read_yaml


@dataclass(frozen=True)
class OptimizedRun:
    run_dir: RunDir
    original: Problem  # the task's model, data and settings
    optimized: ModelHandle  # best/, checked against its MANIFEST
    report: Report  # what optimize measured, the shipped model and the baseline on test among it

    def outputs(self, model: ModelHandle, x: np.ndarray) -> np.ndarray:
        """`model`'s outputs (the original's or the optimized one's) on inputs prepared as the splits were, run as
        the search ran it (the runtime and threads it recorded)."""
        return self.runner(model)(x)

    def runner(self, model: ModelHandle) -> Callable[[np.ndarray], np.ndarray]:
        """`outputs` for one model loaded once, for callers that run it many times (attributions)."""
        run = runtime_for(model).load(model, model.threads_within(self.original.settings.runtime.threads))
        return lambda x: predict(run, Split(x, np.zeros(len(x))))


def load_run(run_dir: str | Path, task: str | Path | None = None) -> OptimizedRun:
    """The run in `run_dir` (runs/<name>); its model and data are loaded from the task the run recorded, or from
    `task` (a task file naming the same model and data) where the run was given Python objects."""
    root = RunDir(Path(run_dir)) if Path(run_dir).is_dir() else None
    if root is None or not root.report_json.is_file() or not root.best.is_dir():
        raise ConfigError(f"{run_dir} is not a finished optimize run (no report.json and best/)",
                          "point to runs/<name> written by tradeoff optimize")
    given = load_task(task) if task is not None else _recorded_task(root)
    original = problem(given)
    return OptimizedRun(root, original, load_artifact(root.best, original.search_dirs),
                        Report.model_validate_json(root.report_json.read_text()))


def _recorded_task(root: RunDir) -> Task:
    recorded = read_yaml(root.task, "the run's task.yaml")
    if recorded.get("model", {}).get("source") == "python":
        raise ConfigError(f"{root.root} was optimized from a model or data given in Python, which the run cannot "
                          "load again", "pass the task file (--task) that names the same model and data")
    spec: Task = task_from_dict(recorded, where=str(root.task))
    dirs = json.loads(root.env.read_text()).get("import_dirs", []) if root.env.is_file() else []
    spec._folder = Path(dirs[0]) if dirs else root.root  # the task's code imports from its own folder
    return spec
