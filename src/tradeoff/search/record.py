"""TrialRecord: what one trial of a study measured, as the rest of tradeoff reads it.

This module is the only code that reads or writes Optuna user attributes, so the storage's layout can change
in one place and a killed or shared study is read back exactly as it was written.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from tradeoff.errors import ConfigError
from tradeoff.insight.cost import Spend
from tradeoff.measure import Latency
from tradeoff.objectives import CONSTRAINTS

State = Literal["complete", "pruned", "failed", "duplicate", "skipped", "running", "interrupted"]
_CANDIDATE, _KEY, _STRATEGY, _RESULT = "candidate", "candidate_key", "strategy", "result"
_INTERMEDIATE = "intermediate"
_TASK, _LAYOUT, _WORKER = "task_key", "layout", "worker"
# version of what trials store; studies written before TrialRecord have none. 3: the sampler is told latency as a
# ratio to the measuring worker's own baseline (objectives.RELATIVE), which each trial's values hold beside the ms
LAYOUT = 3


@dataclass(frozen=True)
class TrialRecord:
    number: int
    state: State
    params: dict[str, Any]  # the trial's suggestions: the candidate's address in its space
    candidate: dict[str, Any] | None = None  # what the space builds, as a dict (a recipe)
    key: str | None = None  # the candidate's identity, to spend no budget on a repeat
    strategy: str | None = None  # what queued it ("seed", "extension"); None: the sampler
    note: str | None = None
    # measured on validation, by name, by the worker that ran the trial: latency_ms.* in its milliseconds, and
    # baseline_latency_ms.* (the baseline, timed in the same rounds) with latency_ratio.* (the ms over it)
    values: dict[str, float | None] = field(default_factory=dict)
    latency: Latency | None = None  # at the first batch size, with how it was timed
    runtime: str | None = None  # the runtime it was measured fastest on
    threads: int | None = None  # the threads it was measured fastest with, where fewer than the task's
    runtimes: dict[str, float] = field(default_factory=dict)  # p50 ms per runtime and threads tried, where timed
    objectives: tuple[float, ...] | None = None  # what the sampler was told, all minimized, latency as the ratio
    violations: dict[str, float] = field(default_factory=dict)  # constraint -> amount past its limit
    retry_of: int | None = None
    worker: str | None = None  # host:pid of the process that measured it (many may share a study)
    error: str | None = None  # the traceback of a failed trial
    failed_step: int | None = None  # how many steps of its recipe it took to fail, where a step failed
    intermediate: dict[int, tuple[float, ...]] = field(default_factory=dict)  # epoch -> objectives (minimized)
    spend: Spend | None = None  # what building and measuring it cost the worker's machine

    @property
    def counted(self) -> bool:
        """Whether it spent budget: a measurement that finished (one cut off by a kill is measured again)."""
        return self.state in ("complete", "pruned", "failed")

    @property
    def feasible(self) -> bool:
        return self.state == "complete" and not self.violations

    @classmethod
    def read(cls, trial: FrozenTrial) -> TrialRecord:
        attrs = trial.user_attrs
        result = attrs.get(_RESULT, {})
        if trial.state == TrialState.RUNNING:
            state: State = "running"
        elif trial.state == TrialState.FAIL and result.get("state") != "failed":
            state = "interrupted"  # its worker died mid-measurement (perhaps after writing its result, before
            # telling the study): heartbeats had it queued again, so it spent no budget
        elif _RESULT in attrs:
            state = result["state"]
        else:
            state = "skipped"
        latency, spend = result.get("latency"), result.get("spend")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry_of = RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)
        return cls(number=trial.number, state=state, params=dict(trial.params), candidate=attrs.get(_CANDIDATE),
                   key=attrs.get(_KEY), strategy=attrs.get(_STRATEGY), note=result.get("note"),
                   values=result.get("values", {}), runtime=result.get("runtime"), threads=result.get("threads"),
                   latency=Latency(**{**latency, "input_shape": tuple(latency["input_shape"])}) if latency else None,
                   runtimes=result.get("runtimes", {}),
                   objectives=tuple(trial.values) if trial.values is not None else None,
                   violations={k: v for k, v in trial.constraints.items() if v > 0}, retry_of=retry_of,
                   worker=attrs.get(_WORKER),
                   error=result.get("error"), failed_step=result.get("failed_step"),
                   intermediate={int(e): tuple(v) for e, v in attrs.get(_INTERMEDIATE, {}).items()},
                   spend=Spend(**spend) if spend else None)


# settings that may differ between a killed run and its resumption, or between the workers of one study
NOT_THE_TASK = ("trials", "timeout_s", "finalists", "storage", "heartbeat_s", "mlflow")


def task_key(record: dict[str, Any]) -> str:
    """What must not change between a killed run and its resumption, or between workers: the task as
    runs/<name>/task.yaml records it, all but NOT_THE_TASK."""
    search = {k: v for k, v in record.get("search", {}).items() if k not in NOT_THE_TASK}
    return hashlib.sha256(json.dumps({**record, "search": search}, sort_keys=True).encode()).hexdigest()


def claim(study: optuna.Study, task_key: str, where: str) -> None:
    """Mark a new study as this task's, written in this layout; refuse to join one of another task or layout
    (its trials would be misread). The layout is written before the task: a worker that starts while another is
    claiming a new study sees no task yet (and claims it alike) or both, never a task without its layout."""
    attrs = study.user_attrs
    if attrs.get(_TASK) is None:
        study.set_user_attr(_LAYOUT, LAYOUT)
        study.set_user_attr(_TASK, task_key)
    elif attrs[_TASK] != task_key:
        raise ConfigError(f"{where} was run for a different task",
                          "give this task another name, or delete the old run directory to start over")
    elif attrs.get(_LAYOUT) != LAYOUT:
        raise ConfigError(f"{where} was written by an older tradeoff, whose trials this one cannot read",
                          "delete the old run directory (or give the task another name) and run it again")


def records(study: optuna.Study) -> list[TrialRecord]:
    return [TrialRecord.read(t) for t in study.get_trials(deepcopy=False)
            if t.state != TrialState.WAITING]


def queue(study: optuna.Study, params: dict[str, Any], strategy: str) -> None:
    study.enqueue_trial(params, user_attrs={_STRATEGY: strategy}, skip_if_exists=True)


def mark_candidate(trial: optuna.Trial, candidate: dict[str, Any], key: str) -> None:
    """Written before the candidate is built, so a trial cut off by a kill still says what it was measuring, and
    where."""
    trial.set_user_attr(_CANDIDATE, candidate)
    trial.set_user_attr(_KEY, key)
    trial.set_user_attr(_WORKER, this_worker())


def write_result(trial: optuna.Trial, state: State, note: str | None = None,
                 values: dict[str, float | None] | None = None, latency: Latency | None = None,
                 runtime: str | None = None, threads: int | None = None, runtimes: dict[str, float] | None = None,
                 violations: dict[str, float] | None = None, error: str | None = None,
                 failed_step: int | None = None, spend: Spend | None = None) -> None:
    """Store what the trial found; the caller then tells the study its state and objectives. With `violations`
    (constraint -> amount past its limit) the sampler learns each constraint's value, zero for those it meets.
    `error` is a failed trial's traceback, `failed_step` the number of steps it took to fail, `spend` what the
    trial cost the machine."""
    if violations is not None:
        for name in CONSTRAINTS:
            trial.set_constraint(name, violations.get(name, 0.0))
    trial.set_user_attr(_RESULT, {"state": state, "note": note, "values": values or {}, "runtime": runtime,
                                  "threads": threads, "latency": asdict(latency) if latency else None,
                                  "runtimes": runtimes or {},
                                  "error": error, "failed_step": failed_step,
                                  "spend": asdict(spend) if spend else None})


def write_intermediate(trial: optuna.Trial, epoch: int, point: tuple[float, ...]) -> None:
    """The objectives (minimized) a training candidate reached after `epoch`: what pruners compare trials by,
    for several objectives too (Optuna's own intermediate values take one)."""
    known = dict(trial.user_attrs.get(_INTERMEDIATE, {}))
    trial.set_user_attr(_INTERMEDIATE, {**known, str(epoch): list(point)})


def this_worker() -> str:
    """host:pid, what a trial records of the process that measured it."""
    return f"{socket.gethostname()}:{os.getpid()}"
