"""`tradeoff worker`: one more process measuring trials of a study that many share through an RDB storage.

A worker joins the task's study, measures trials until the study's budget (search.trials, counted over every
worker) or its own search.timeout_s is spent, and ends. It writes no run directory: the front, the choice, the
test split and the report come from `tradeoff optimize` with the same storage, which runs what is left and
finalizes from every worker's trials.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna

from tradeoff.config import PRIVATE_STORAGES, Settings, Task, load_task
from tradeoff.errors import ConfigError
from tradeoff.problem import Problem, problem
from tradeoff.search.record import records, this_worker


@dataclass(frozen=True)
class WorkerResult:
    measured: int  # trials this worker measured (spent budget on)
    study_trials: int  # trials of the study that spent budget, every worker's
    budget: int


def _result(study: optuna.Study, budget: int) -> WorkerResult:
    """What a worker says when the study's budget is spent: its own share (the trials it recorded as theirs)."""
    counted = [r for r in records(study) if r.counted]
    return WorkerResult(sum(r.worker == this_worker() for r in counted), len(counted), budget)


def _optimize_worker(given: Problem, quiet: bool) -> WorkerResult:
    from tradeoff.optimize import search_recipes

    searched = search_recipes(given, None, quiet, joining="joining the study")
    return _result(searched.study, given.settings.search.trials)


def _trained_worker(kind: str) -> Callable[[Problem, bool], WorkerResult]:
    """A worker of a search whose candidates are trained (tune, nas): the same study, no run directory."""

    def work(given: Problem, quiet: bool) -> WorkerResult:
        from tradeoff.tuning.run import nas_search, tune_search

        searching = (tune_search if kind == "tune" else nas_search)(given, None, None)
        study, _ = searching.run(quiet, joining="joining the study")
        return _result(study, given.settings.search.trials)

    return work


# the kinds of search a worker can join, by the command that finalizes them
SEARCHES: dict[str, Callable[[Problem, bool], WorkerResult]] = {
    "optimize": _optimize_worker, "tune": _trained_worker("tune"), "nas": _trained_worker("nas")}


def search_kind(settings: Settings) -> str:
    """Which search the task file asks for, by the command that finalizes it: a tune: section is tuned, a nas:
    section searched for architectures, anything else searched for compressions (optimize)."""
    return "tune" if settings.tune is not None else "nas" if settings.nas is not None else "optimize"


def work(task: Task | str | Path, storage: str | None = None, quiet: bool = False) -> WorkerResult:
    """Measure trials of the task's study on `storage` (default: search.storage, which must then be a URL) until
    the study's trial budget or this worker's time budget is spent."""
    spec = task if isinstance(task, Task) else load_task(task)
    url = storage or spec.search.storage
    if url in PRIVATE_STORAGES:
        raise ConfigError(f"a worker needs a study the other processes can reach, and search.storage is '{url}'",
                          "pass --storage postgresql+psycopg://user@host/database (or set search.storage to it)")
    spec = spec.model_copy(update={"search": spec.search.model_copy(update={"storage": url})})
    return SEARCHES[search_kind(spec)](problem(spec, where="tradeoff worker"), quiet)
