"""The Optuna study: each trial samples a candidate from a space, builds it, measures it, reports objectives.

The loop knows candidates only through the CandidateSpace protocol and trial results only as TrialRecords, so
a space of recipes, of training hyperparameters or of architectures runs through the same code. Everything a
report needs is in the storage: a killed run resumes from it with no finished trial lost or repeated, and
several workers share one study through an RDB storage, where heartbeats tell a dead worker's trial (retried)
from a live one's (left alone). Each worker tells the sampler latency as a ratio to the baseline, which it times
beside each trial, so trials measured on different machines (or in a slow spell of one) compare fairly.
"""

from __future__ import annotations

import random
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from tradeoff.config import PRIVATE_STORAGES, Settings
from tradeoff.context import Context
from tradeoff.errors import ConfigError
from tradeoff.evaluation import Evaluator, Measurement
from tradeoff.insight.cost import SpendMeter
from tradeoff.measure import Latency
from tradeoff.model import ModelHandle
from tradeoff.objectives import minimized, violations
from tradeoff.rundir import RunDir
from tradeoff.search.record import (
    State,
    TrialRecord,
    claim,
    mark_candidate,
    queue,
    records,
    write_intermediate,
    write_result,
)
from tradeoff.search.space import StepFailed

# Consecutive samples that yield no new candidate before the space counts as exhausted.
EXHAUSTED_AFTER = 40
SCHEMA_RACE_RETRIES = 5  # workers creating a fresh database's tables at once
# How often a trial waiting for room in a shared budget looks again (seconds).
ROOM_POLL_S = 0.5
# Rounds in which a trial is timed beside the baseline, each model for half of a plain measurement's budget (the
# two together cost what the trial timed alone did): a slow model (MiniLM at batch 32 in torch, 0.7 s a call) takes
# a warm-up call and one timed call in each, so few
TRIAL_ROUNDS = 5

T = TypeVar("T")


class Candidate(Protocol):
    def key(self) -> str: ...

    def as_dict(self) -> dict[str, Any]: ...


class CandidateSpace(Protocol):
    """What the study needs of a space: define-by-run sampling, building, and the space's own strategy."""

    def sample(self, trial: optuna.Trial) -> Candidate | None:
        """The candidate the trial's suggestions spell (it may suggest as it goes); None where they spell none."""

    def at(self, params: Mapping[str, Any]) -> Candidate | None:
        """The candidate at a point of the space."""

    def grid(self) -> list[dict[str, Any]] | None:
        """Every point of a finite space; None where the space is continuous."""

    def queued(self, finished: Iterable[TrialRecord]) -> list[tuple[dict[str, Any], str]]:
        """Points the space wants measured next, each with the name of the strategy that chose it."""

    def build(self, candidate: Any, ctx: Context) -> ModelHandle:
        """The model the candidate describes, made from `ctx.teacher` (the model the search starts from); a step
        that fails raises StepFailed."""

    def failure(self, candidate: Any) -> str | None:
        """Why the candidate cannot be built, where an earlier build learned it; None where none did."""

    def learn(self, finished: Iterable[TrialRecord]) -> None:
        """Take in what failed in trials built elsewhere (before a resume, by another worker)."""

    def without_unchanged(self, candidate: Any) -> tuple[Candidate | None, list[str]]:
        """After `build`: the candidate less the steps that changed nothing (None where that leaves the starting
        model), and the names of those steps."""


class Pruned(optuna.TrialPruned):
    """A candidate stopped before it was fully measured: over a ceiling before training, or hopeless at an epoch.
    `values` are what was measured by then (the epochs trained among them)."""

    def __init__(self, note: str, values: Mapping[str, float | None] | None = None) -> None:
        super().__init__(note)
        self.note, self.values = note, dict(values or {})


@dataclass(frozen=True)
class Outcome:
    """What measuring one candidate found, before it is judged against the constraints; `state` pruned where it
    was found hopeless before all of it was measured (`note` says why)."""

    values: dict[str, float | None]
    latency: Latency | None = None
    runtime: str | None = None
    threads: int | None = None
    runtimes: dict[str, float] = field(default_factory=dict)
    note: str | None = None
    state: State = "complete"


def measure_on_validation(model: ModelHandle, evaluator: Evaluator, baseline_val: Measurement,
                          max_metric_drop: float | None) -> Outcome:
    """Metric on validation first; a candidate that already breaks the metric constraint is hopeless and is not
    timed. The others run on the fastest runtime (where the target is auto), metric included, then are timed in
    TRIAL_ROUNDS rounds beside the baseline (`evaluator.baseline`): their values hold the latency in ms and as a
    ratio to the baseline in the same rounds, which a slow spell of the machine moves little (timed alone, a trial
    in such a spell lost to slower ones and was never among the finalists: benchmarks/RESULTS.md, the sixteenth
    session's quantize_cpu)."""
    measured = evaluator.measure(model, "val", timing=False)
    drop = evaluator.metric.drop(baseline_val.metric, measured.metric)
    if max_metric_drop is not None and drop > max_metric_drop:
        return Outcome(values=measured.values(metric_drop=drop), state="pruned",
                       note="metric drop over the limit on validation; latency not timed")
    model, runtimes = evaluator.with_fastest_runtime(model, "val")
    if model.runtime is not None and model.runtime != measured.runtime:  # the metric where it will run
        measured = evaluator.measure(model, "val", timing=False)
        drop = evaluator.metric.drop(baseline_val.metric, measured.metric)
    base, latency = evaluator.interleaved_latency([evaluator.baseline, model], "val", rounds=TRIAL_ROUNDS,
                                                  runs_per_round=1, budget_s=evaluator.timing_s / 2)
    measured = replace(measured, latency=latency)
    return Outcome(values=measured.values(metric_drop=drop, baseline=replace(baseline_val, latency=base)),
                   latency=measured.primary_latency, runtime=model.runtime, threads=model.threads, runtimes=runtimes)


def random_draws(sample: Callable[[optuna.Trial], T], count: int, seed: int) -> list[tuple[dict[str, Any], T]]:
    """`count` points of a space drawn at random on a scratch in-memory study with Optuna's RandomSampler
    (define-by-run: conditional parameters included), each with what `sample` made of it; the real study sees
    only the points enqueued in it."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a scratch study is no news to the user
    scratch = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    draws = []
    for _ in range(count):
        trial = scratch.ask()
        drawn = sample(trial)
        draws.append((dict(trial.params), drawn))
        scratch.tell(trial, 0.0)
    return draws


def _storage(url: str | None, heartbeat_s: int) -> RDBStorage | None:
    """An RDB storage with heartbeats: a trial whose worker stopped beating for three intervals is failed and
    queued again (once); a live worker's trial is never touched.

    Workers started together on an empty database race to create Optuna's tables, and the losers' CREATE fails on
    a name the winner just took: such a clash is retried (the tables are there by then); anything else is the
    user's URL or server."""
    if url is None:
        return None
    attempts = 0
    while True:
        try:
            return RDBStorage(url, heartbeat_interval=heartbeat_s, grace_period=3 * heartbeat_s,
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1))
        except Exception as exc:  # SQLAlchemy raises many types for a bad URL or an unreachable server
            clash = "duplicate key" in str(exc) or "already exists" in str(exc)
            if not clash or attempts == SCHEMA_RACE_RETRIES:
                raise ConfigError(f"cannot open the study storage {url}: {str(exc).splitlines()[0]}",
                                  "check search.storage (sqlite, memory, or an RDB URL such as "
                                  "postgresql+psycopg://...)") from None
            attempts += 1
            time.sleep(random.uniform(0.2, 1.0))


def study_url(storage: str, run_dir: RunDir | None) -> str | None:
    """Where a study with `search.storage` lives: the run directory's SQLite file, memory (None), or the URL given
    (which other processes may share)."""
    if storage == "sqlite":
        assert run_dir is not None, "only a run with a run directory keeps its study there"
        return run_dir.storage_url()
    return None if storage == "memory" else storage


def sampler_seed(settings: Settings) -> int:
    """The search's seed, or on a storage other processes may share a fresh one per process: workers seeded alike
    would propose the same candidates side by side. The order of a shared study's trials is not reproducible
    anyway; each trial is, from its parameters and the task's seed."""
    shared = settings.search.storage not in PRIVATE_STORAGES
    return random.SystemRandom().randrange(2**32) if shared else settings.search.seed


def open_study(settings: Settings, url: str | None, task_key: str, sampler: optuna.samplers.BaseSampler | None = None,
               pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    """Create the study, or join it when its storage holds one for this same task (budgets may differ). The
    sampler defaults to multivariate TPE (seeded by `sampler_seed`); the pruner judges single-objective trials
    that report epochs."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = sampler or optuna.samplers.TPESampler(seed=sampler_seed(settings), multivariate=True,
                                                        group=True, n_startup_trials=6)
        study = optuna.create_study(study_name=settings.name, storage=_storage(url, settings.search.heartbeat_s),
                                    sampler=sampler, pruner=pruner, load_if_exists=True,
                                    directions=["minimize"] * len(settings.objectives))
    claim(study, task_key, f"the study '{settings.name}' in {url}")
    _retry_stale(study)
    return study


def _retry_stale(study: optuna.Study) -> None:
    """Fail the trials whose worker stopped beating (a killed run's last trial) and queue them again; called as
    the study opens and before each trial, since a run resumed at once finds the dead trial still fresh."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def counted_trials(study: optuna.Study) -> int:
    return sum(1 for r in records(study) if r.counted)


def _measured(counted: Iterable[TrialRecord]) -> set[str]:
    return {r.key for r in counted if r.key}


@contextmanager
def _heartbeat(study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
    """Beat for the trial while it is measured (Optuna beats only inside study.optimize, not for ask and tell)."""
    storage: Any = study._storage  # noqa: SLF001 - Optuna's cache around an RDBStorage, which beats through it
    interval = storage.get_heartbeat_interval() if hasattr(storage, "get_heartbeat_interval") else None
    if interval is None:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            storage.record_heartbeat(trial._trial_id)  # noqa: SLF001 - ask/tell trials expose no public id
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@dataclass
class StudyRun:
    """One worker's part of a study: the space, how a built candidate is measured, the task's limits."""

    study: optuna.Study
    space: CandidateSpace
    ctx: Context
    measure: Callable[[ModelHandle], Outcome]
    settings: Settings
    higher_is_better: bool
    on_trial: Callable[[TrialRecord], None] = lambda record: None
    debug: bool = False  # a failing candidate raises instead of being recorded as a failed trial
    # judges a multi-objective trial at an epoch (Optuna's pruners take one objective): True stops it
    dominated: Callable[[optuna.Study, int, tuple[float, ...]], bool] | None = None
    trackers: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = ()  # Optuna callbacks, per counted trial
    started: float | None = None  # time.monotonic() the run began, whence `search.timeout_s` counts; None: now
    # seconds that what follows the search will take, given the trials so far: no trial starts unless it leaves them
    reserve: Callable[[list[TrialRecord]], float] = lambda counted: 0.0

    def run(self) -> None:
        """Measure new candidates until the trial budget (counted over every worker of the study), the time budget
        or the space is used up.

        A sample that repeats a measured candidate (or spells none) costs no budget; in a finite space it is
        followed by an unseen point of the grid, so small spaces are covered instead of resampled, and elsewhere by
        a point drawn at random, so a sampler that has converged does not end the search with budget unspent.
        """
        search = self.settings.search
        started = time.monotonic() if self.started is None else self.started
        deadline = started + search.timeout_s if search.timeout_s else float("inf")
        settled: set[str] = set()  # candidates closed without a measurement: repeats, known failures
        grid = self.space.grid()
        unmeasured = {self.space.at(p).key(): p for p in grid} if grid is not None else None  # type: ignore[union-attr]
        rng = random.Random(search.seed + counted_trials(self.study))
        fruitless = 0
        while True:
            _retry_stale(self.study)
            counted = [r for r in records(self.study) if r.counted]  # other workers' trials count too
            if len(counted) >= search.trials or time.monotonic() + self.reserve(counted) >= deadline:
                return
            self.space.learn(counted)
            if not self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                for params, strategy in self.space.queued(counted):
                    queue(self.study, params, strategy)
            left = unmeasured.keys() - _measured(counted) - settled if unmeasured is not None else None
            if left is not None and not left or fruitless >= EXHAUSTED_AFTER:
                return
            with warnings.catch_warnings():  # Optuna warns that heartbeats are meant for study.optimize
                warnings.filterwarnings("ignore", message="Heartbeat of storage")
                trial = self.study.ask()
            with _heartbeat(self.study, trial):
                room = self._room_for(trial)
            if room is None:
                self._skip(trial, "the trial budget was spent by other workers")
                continue
            seen = {r.key: r for r in room if r.key}
            record = self._trial(trial, self.space.sample(trial), seen)
            if not record.counted:
                settled |= {record.key} if record.key else set()
                if unmeasured is None:
                    queue(self.study, self._random_point(rng), "random, after a sample that spent no budget")
                elif left := unmeasured.keys() - seen.keys() - settled:
                    queue(self.study, unmeasured[rng.choice(sorted(left))], "grid")
                fruitless += 1
                continue
            fruitless = 0
            self.on_trial(record)
            if self.trackers:
                finished = self.study._storage.get_trial(trial._trial_id)  # noqa: SLF001 - see _heartbeat
                for track in self.trackers:
                    track(self.study, finished)

    def _random_point(self, rng: random.Random) -> dict[str, Any]:
        """A point drawn at random. A sampler that has converged repeats itself; without this a search in a large
        space stopped after EXHAUSTED_AFTER repeats with most of its time budget unspent (TPE in
        benchmarks/nas.py: 11 of 30 minutes)."""
        [(params, _)] = random_draws(self.space.sample, 1, rng.randrange(2**32))
        return params

    def _room_for(self, trial: optuna.Trial) -> list[TrialRecord] | None:
        """The trials that spent budget, once the budget has room for this one to be measured; None where other
        workers spent it. Workers race for the last trials of a shared budget: a trial goes ahead while the trials
        that spent budget and the live ones begun before it (a lower id in the storage) leave room, and otherwise
        waits for those to end (they may end as repeats, which spend none). Of two racing trials the later waits,
        so the workers of a study together measure its budget, not one trial more."""
        while True:
            _retry_stale(self.study)  # a dead worker's trial stops holding up the others
            trials = self.study.get_trials(deepcopy=False)
            counted = [r for r in map(TrialRecord.read, trials) if r.counted]
            earlier = sum(t.state == TrialState.RUNNING and t._trial_id < trial._trial_id  # noqa: SLF001
                          for t in trials)
            if len(counted) >= self.settings.search.trials:
                return None
            if len(counted) + earlier < self.settings.search.trials:
                return counted
            time.sleep(ROOM_POLL_S)

    def _trial(self, trial: optuna.Trial, candidate: Candidate | None,
               seen: Mapping[str, TrialRecord]) -> TrialRecord:
        """Measure the trial's candidate, or close the trial at no budget where it spells none, repeats a measured
        candidate, or needs a step the space already saw fail."""
        if candidate is None:
            return self._skip(trial, "no passes, or passes that cannot follow one another")
        mark_candidate(trial, candidate.as_dict(), candidate.key())
        if (earlier := seen.get(candidate.key()) or self._twin(trial, candidate.key())) is not None:
            return self._duplicate(trial, earlier)
        if (failure := self.space.failure(candidate)) is not None:
            return self._skip(trial, f"not built: {failure} (learned from an earlier trial)")
        return self._measure(trial, candidate, seen)

    def _twin(self, trial: optuna.Trial, key: str) -> TrialRecord | None:
        """An earlier trial's record of the same candidate, once every such trial still live has ended: two workers
        that find the queue empty at once both queue the seed points, and a copy drawn while the first is measured
        would be measured twice (the finished trials in `seen` do not hold it yet). None where no earlier trial
        measured it (or the one that tried died: its retry is this trial's to measure)."""
        twins = self._earlier_trials_of(trial, key)
        if any(other.state == TrialState.RUNNING for other in twins):
            with _heartbeat(self.study, trial):  # this trial beats while it waits, so that no one fails it as dead
                while any(other.state == TrialState.RUNNING for other in twins):
                    time.sleep(ROOM_POLL_S)
                    _retry_stale(self.study)  # a twin whose worker died ends too
                    twins = self._earlier_trials_of(trial, key)
        return next((r for r in map(TrialRecord.read, twins) if r.counted), None)

    def _earlier_trials_of(self, trial: optuna.Trial, key: str) -> list[FrozenTrial]:
        return [other for other in self.study.get_trials(deepcopy=False)
                if other._trial_id < trial._trial_id  # noqa: SLF001 - the storage's order, as in _room_for
                and TrialRecord.read(other).key == key]

    def _skip(self, trial: optuna.Trial, note: str) -> TrialRecord:
        write_result(trial, "skipped", note=note)
        return TrialRecord.read(self.study.tell(trial, state=TrialState.PRUNED))

    def _duplicate(self, trial: optuna.Trial, earlier: TrialRecord, why: str | None = None) -> TrialRecord:
        """Tell the earlier trial's result again, so the sampler learns where it has been."""
        write_result(trial, "duplicate", note="; ".join(n for n in (why, f"same candidate as trial {earlier.number}")
                                                       if n), violations=earlier.violations)
        if earlier.state == "complete":
            return TrialRecord.read(self.study.tell(trial, list(earlier.objectives or ())))
        return TrialRecord.read(self.study.tell(trial, state=TrialState.PRUNED))

    def _measure(self, trial: optuna.Trial, candidate: Candidate, seen: Mapping[str, TrialRecord]) -> TrialRecord:
        """Build and measure the candidate. A step that changed nothing is left out of its recipe and named in the
        note; what is left may be the baseline (skipped) or a candidate measured before (a duplicate). What the
        trial cost this machine (time, CPU, memory, energy) is stored with what it measured."""
        epochs: list[int] = []
        with SpendMeter() as meter:
            try:
                with _heartbeat(self.study, trial):
                    model = self.space.build(candidate, replace(self.ctx, on_epoch=self._reporter(trial, epochs)))
                    effective, unchanged = self.space.without_unchanged(candidate)
                    note = None
                    if unchanged:
                        note = f"{', '.join(unchanged)} changed nothing on this model (left out of the recipe)"
                        if effective is None:
                            return self._skip(trial, f"{note}: what is left is the baseline")
                        mark_candidate(trial, effective.as_dict(), effective.key())  # a repeat of either is seen
                        if (earlier := seen.get(effective.key()) or self._twin(trial, effective.key())) is not None:
                            return self._duplicate(trial, earlier, note)
                    outcome = self.measure(model)
            except Pruned as pruned:
                write_result(trial, "pruned", note=pruned.note, values={**pruned.values, **_trained(epochs)},
                             spend=meter.stop())
                return TrialRecord.read(self.study.tell(trial, state=TrialState.PRUNED))
            except Exception as exc:  # one broken candidate must not end a long search; the trial says why
                failed = exc if isinstance(exc, StepFailed) else StepFailed("measuring", exc)
                write_result(trial, "failed", note=failed.note, error=failed.details, failed_step=failed.depth,
                             spend=meter.stop())
                record = TrialRecord.read(self.study.tell(trial, state=TrialState.FAIL))
                if self.debug:
                    raise
                return record
        if note is not None:
            outcome = replace(outcome, note="; ".join(n for n in (note, outcome.note) if n))
        outcome = replace(outcome, values={**outcome.values, **_trained(epochs)})
        first_batch = self.settings.runtime.batch_sizes[0]
        broken = {v.constraint: v.missed_by
                  for v in violations(self.settings.constraints.model_dump(), outcome.values, first_batch)}
        write_result(trial, outcome.state, note=outcome.note, values=outcome.values, latency=outcome.latency,
                     runtime=outcome.runtime, threads=outcome.threads, runtimes=outcome.runtimes, violations=broken,
                     spend=meter.stop())
        if outcome.state == "pruned":
            return TrialRecord.read(self.study.tell(trial, state=TrialState.PRUNED))
        return TrialRecord.read(self.study.tell(trial, list(minimized(self.settings.objectives, outcome.values,
                                                                      first_batch, self.higher_is_better,
                                                                      relative=True))))

    def _reporter(self, trial: optuna.Trial, epochs: list[int]) -> Callable[[int, Mapping[str, float | None]], None]:
        """What a candidate that trains calls after each epoch with the values known so far: the study keeps them
        and stops the trial (Pruned) where its pruner finds it hopeless: Optuna's own for one objective, the
        `dominated` rule for several (Optuna's pruners take one)."""
        first_batch = self.settings.runtime.batch_sizes[0]

        def report(epoch: int, values: Mapping[str, float | None]) -> None:
            epochs.append(epoch)
            point = minimized(self.settings.objectives, values, first_batch, self.higher_is_better, relative=True)
            write_intermediate(trial, epoch, point)
            if len(point) == 1:
                trial.report(point[0], epoch)
                hopeless = trial.should_prune()
            else:
                hopeless = self.dominated is not None and self.dominated(self.study, epoch, point)
            if hopeless:
                raise Pruned(f"stopped after epoch {epoch}: behind the finished trials at that epoch", values)

        return report


def _trained(epochs: list[int]) -> dict[str, float | None]:
    """The epochs a trial trained, for counting the compute a search spent."""
    return {"epochs": float(len(epochs))} if epochs else {}
