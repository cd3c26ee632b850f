"""The Optuna study: each trial samples a recipe, builds it, measures it on validation, reports objectives.

Everything a report needs is stored in the trial's user attributes, so a killed run resumes from its
storage and the report is rebuilt from it with no trial lost or repeated.
"""

from __future__ import annotations

import random
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, replace

import optuna
from optuna.trial import TrialState

from tradeoff.config import Settings
from tradeoff.errors import ConfigError, TradeoffError
from tradeoff.evaluation import Evaluator, Measurement
from tradeoff.model import Format, ModelHandle
from tradeoff.passes import Context, build_pass
from tradeoff.recipe import Recipe
from tradeoff.search.constraints import violations
from tradeoff.search.pareto import minimized, pick_best
from tradeoff.search.space import Space

# Consecutive samples that yield no new recipe before the space counts as exhausted.
EXHAUSTED_AFTER = 40


class RecipeBuilder:
    """Applies recipes, reusing the results of shared prefixes (an export costs seconds; many trials share it)."""

    def __init__(self, baseline: ModelHandle, ctx: Context, capacity: int = 8) -> None:
        self.baseline, self.ctx, self.capacity = baseline, ctx, capacity
        self._cache: OrderedDict[str, ModelHandle] = OrderedDict()

    def build(self, recipe: Recipe) -> ModelHandle:
        model = self.baseline
        for depth in range(1, len(recipe.steps) + 1):
            key = Recipe(steps=recipe.steps[:depth]).key()
            if key in self._cache:
                self._cache.move_to_end(key)
            else:
                self._cache[key] = build_pass(recipe.steps[depth - 1]).apply(model, self.ctx)
                if len(self._cache) > self.capacity:
                    self._cache.popitem(last=False)
            model = self._cache[key]
        return model.with_runtime(recipe.runtime)


def measurement_attrs(measured: Measurement) -> dict[str, object]:
    latency = measured.primary_latency
    return {"metric": measured.metric, "size_bytes": measured.size.bytes, "size_zstd_bytes": measured.size.zstd_bytes,
            "params": measured.params, "nonzero_params": measured.nonzero_params, "macs": measured.macs,
            "latency": asdict(latency) if latency else None}


def set_constraints(trial: optuna.Trial, settings: Settings, drop: float, latency_ms: float | None,
                    size_bytes: int) -> None:
    """Tell the sampler how far past each constraint the trial is (zero or less is feasible)."""
    broken = {v.constraint: v.missed_by for v in violations(settings.constraints, drop, latency_ms, size_bytes)}
    for name in ("max_metric_drop", "max_latency_ms", "max_size_bytes"):
        trial.set_constraint(name, broken.get(name, 0.0))


def open_study(settings: Settings, storage: str | None, task_key: str) -> optuna.Study:
    """Create the study, or resume it when its storage holds one for this same task (budgets may differ)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=settings.search.seed, multivariate=True, group=True,
                                             n_startup_trials=6)
    study = optuna.create_study(study_name=settings.name, storage=storage, sampler=sampler, load_if_exists=True,
                                directions=["minimize"] * len(settings.objectives))
    stored_key = study.user_attrs.get("task_key")
    if stored_key is None:
        study.set_user_attr("task_key", task_key)
    elif stored_key != task_key:
        raise ConfigError(f"the study '{settings.name}' in {storage} was run for a different task",
                          "give this task another name, or delete the old run directory to start over")
    for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        # A trial cut off by a kill: fail it and queue its parameters so it is measured again, not lost.
        study.tell(stale.number, state=TrialState.FAIL)
        study.enqueue_trial(stale.params, user_attrs={"retry_of": stale.number})
    return study


def counted_trials(study: optuna.Study) -> int:
    return sum(1 for t in study.get_trials(deepcopy=False) if t.user_attrs.get("counted"))


def run_study(study: optuna.Study, settings: Settings, space: Space, builder: RecipeBuilder, evaluator: Evaluator,
              baseline_val: Measurement, on_trial: Callable[[optuna.trial.FrozenTrial], None]) -> None:
    """Measure new recipes until the trial budget, the time budget or the space is used up.

    A sample that repeats a measured recipe (or spells none) costs no budget; in a finite space it is followed
    by an unseen point of the grid, so small spaces are covered instead of resampled.
    """
    deadline = time.monotonic() + settings.search.timeout_s if settings.search.timeout_s else float("inf")
    start = builder.baseline.format
    seen = {t.user_attrs["recipe_key"]: t for t in study.get_trials(deepcopy=False)
            if t.user_attrs.get("counted") and t.state != TrialState.FAIL}
    grid = space.grid(start)
    unmeasured = {space.recipe_at(p, start).key(): p for p in grid} if grid is not None else None  # type: ignore[union-attr]
    rng = random.Random(settings.search.seed + len(seen))
    if not study.trials:
        for point in space.single_pass_points("quantize", start):
            study.enqueue_trial(point)
    fruitless = 0
    while counted_trials(study) < settings.search.trials and time.monotonic() < deadline:
        _extend_the_best_once(study, space, start)
        if unmeasured is not None and not (unmeasured.keys() - seen.keys()) or fruitless >= EXHAUSTED_AFTER:
            return
        trial = study.ask()
        recipe = space.sample(trial, start)
        earlier = seen.get(recipe.key()) if recipe is not None else None
        if recipe is None or earlier is not None:
            _tell_unmeasured(study, trial, recipe, earlier)
            if unmeasured is not None:
                study.enqueue_trial(unmeasured[rng.choice(sorted(unmeasured.keys() - seen.keys()))])
            fruitless += 1
            continue
        fruitless = 0
        trial.set_user_attr("recipe", recipe.model_dump(mode="json"))
        trial.set_user_attr("recipe_key", recipe.key())
        trial.set_user_attr("counted", True)
        finished = _measure_trial(study, trial, settings, recipe, builder, evaluator, baseline_val)
        seen[recipe.key()] = finished
        on_trial(finished)


def _extend_the_best_once(study: optuna.Study, space: Space, start: Format) -> None:
    """When the queued single-pass candidates are measured, queue the best feasible one with one more step after
    it (an embedding table in 4 bits after int8, say): TPE alone rarely lands on a two-pass recipe in a short
    search. Once per study, so a resumed search does not queue the same points again."""
    if study.user_attrs.get("extended") or study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        return
    feasible = {t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if all(value <= 0 for value in t.constraints.values())}
    if not feasible:
        return
    best = feasible[pick_best({n: t.values for n, t in feasible.items()})]
    for point in space.extensions(best.params, start):
        study.enqueue_trial(point, skip_if_exists=True)
    study.set_user_attr("extended", True)


def _tell_unmeasured(study: optuna.Study, trial: optuna.Trial, recipe: Recipe | None,
                     earlier: optuna.trial.FrozenTrial | None) -> None:
    """Close a trial that measures nothing: repeat an earlier result so the sampler learns, or skip it."""
    if recipe is None or earlier is None:
        trial.set_user_attr("status", "skipped")
        trial.set_user_attr("note", "no passes, or passes that cannot follow one another")
        study.tell(trial, state=TrialState.PRUNED)
        return
    trial.set_user_attr("recipe", recipe.model_dump(mode="json"))
    _tell_duplicate(study, trial, earlier)


def _tell_duplicate(study: optuna.Study, trial: optuna.Trial, earlier: optuna.trial.FrozenTrial) -> None:
    """Repeat the earlier trial's result so the sampler learns, without spending budget on it again."""
    trial.set_user_attr("status", "duplicate")
    trial.set_user_attr("note", f"same recipe as trial {earlier.number}")
    for name, value in earlier.constraints.items():
        trial.set_constraint(name, value)
    if earlier.state == TrialState.COMPLETE:
        study.tell(trial, earlier.values)
    else:
        study.tell(trial, state=TrialState.PRUNED)


def _measure_trial(study: optuna.Study, trial: optuna.Trial, settings: Settings, recipe: Recipe,
                   builder: RecipeBuilder, evaluator: Evaluator,
                   baseline_val: Measurement) -> optuna.trial.FrozenTrial:
    limits = settings.constraints
    try:
        model = builder.build(recipe)
        measured = evaluator.measure(model, "val", timing=False)
        drop = evaluator.metric.drop(baseline_val.metric, measured.metric)
        trial.set_user_attr("metric_drop", drop)
        if limits.max_metric_drop is None or drop <= limits.max_metric_drop:
            # A candidate that already breaks the metric constraint is hopeless: its latency is not timed.
            model, runtimes = evaluator.with_fastest_runtime(model, "val")
            trial.set_user_attr("runtimes", runtimes)
            if model.runtime != recipe.runtime:  # finalists are rebuilt from the recipe: it names the runtime
                chosen = recipe.model_copy(update={"runtime": model.runtime})
                trial.set_user_attr("recipe", chosen.model_dump(mode="json"))
            if model.runtime is not None and model.runtime != measured.runtime:  # the metric where it will run
                measured = evaluator.measure(model, "val", timing=False)
                drop = evaluator.metric.drop(baseline_val.metric, measured.metric)
                trial.set_user_attr("metric_drop", drop)
            measured = replace(measured, latency=evaluator.latency(model, "val"))
    except Exception as exc:  # one broken combination of passes must not end a long search; the trial says why
        note = str(exc) if isinstance(exc, TradeoffError) else f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        trial.set_user_attr("status", "failed")
        trial.set_user_attr("note", note)
        return study.tell(trial, state=TrialState.FAIL)
    for key, value in measurement_attrs(measured).items():
        trial.set_user_attr(key, value)
    latency = measured.primary_latency
    set_constraints(trial, settings, drop, latency.p50_ms if latency else None, measured.size.bytes)
    if latency is None:
        trial.set_user_attr("status", "pruned")
        trial.set_user_attr("note", "metric drop over the limit on validation; latency not timed")
        return study.tell(trial, state=TrialState.PRUNED)
    trial.set_user_attr("status", "complete")
    return study.tell(trial, list(minimized(settings.objectives, evaluator.metric.higher_is_better,
                                            latency.p50_ms, measured.size.bytes, measured.metric)))
