"""The samplers and pruners a tuning study can run, by the names a task file gives them.

Optuna's own where it has one. Its pruners judge one objective only (its issue 3450), so several objectives are
pruned by dominance: a trial whose point at an epoch is dominated by the points most finished trials had reached
by that same epoch is stopped, the multi-objective analogue of the median rule.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna

from tradeoff.errors import ConfigError
from tradeoff.imports import import_object
from tradeoff.nas.strategies import RegularizedEvolution, Reinforce
from tradeoff.search.record import records
from tradeoff.search.select import dominates
from tradeoff.tuning.space import HyperparameterSpace

STARTUP_TRIALS = 5  # finished trials before any pruner judges, and before TPE models the space


def sampler_for(name: str, seed: int, space: HyperparameterSpace, objectives: int,
                search_dirs: tuple[Path, ...] = (), population: int = 20,
                tournament: int = 5) -> optuna.samplers.BaseSampler:
    """`name`: tpe, gp, cmaes, random, grid, nsga2, the architecture search's evolution (regularized, with its
    `population` and `tournament`) and rl (REINFORCE), or module:callable(seed) returning an Optuna sampler."""
    if name == "cmaes" and objectives > 1:
        raise ConfigError("sampler cmaes optimizes one objective", "use tpe or nsga2 for several objectives")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                              n_startup_trials=STARTUP_TRIALS, constant_liar=True)
        if name == "gp":
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=STARTUP_TRIALS)
        if name == "cmaes":  # CMA-ES samples numbers; categorical choices go to TPE
            return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=STARTUP_TRIALS,
                                                warn_independent_sampling=False,
                                                independent_sampler=optuna.samplers.TPESampler(seed=seed))
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "grid":
            return _Grid(space.grid_space(), seed=seed)
        if name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed)
        if name == "evolution":
            return RegularizedEvolution(population, tournament, seed=seed)
        if name == "rl":
            return Reinforce(seed=seed)
    sampler = import_object(name, "tune.sampler", search_dirs)(seed)
    if not isinstance(sampler, optuna.samplers.BaseSampler):
        raise ConfigError(f"tune.sampler '{name}' returned a {type(sampler).__name__}, not an Optuna sampler",
                          "return an instance of an optuna.samplers.BaseSampler subclass")
    return sampler


def pruner_for(name: str, max_epochs: int, warmup_epochs: int) -> optuna.pruners.BasePruner:
    """Optuna's pruner by name, judging from epoch `warmup_epochs` on (epochs count from 1); dominance and none
    leave Optuna's pruning off (dominance acts apart)."""
    match name:
        case "median":  # Optuna's steps are our epochs; it judges from step n_warmup_steps on
            return optuna.pruners.MedianPruner(n_startup_trials=STARTUP_TRIALS, n_warmup_steps=warmup_epochs)
        case "successive_halving":
            return optuna.pruners.SuccessiveHalvingPruner(min_resource=warmup_epochs, reduction_factor=3)
        case "hyperband":
            return optuna.pruners.HyperbandPruner(min_resource=warmup_epochs,
                                                  max_resource=max(max_epochs, warmup_epochs), reduction_factor=3)
        case "wilcoxon":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.pruners.WilcoxonPruner(p_threshold=0.1, n_startup_steps=warmup_epochs + 1)
    return optuna.pruners.NopPruner()


@dataclass(frozen=True)
class DominancePruner:
    """Stops a trial at an epoch where the points that at least `fraction` of the finished trials had reached by
    that epoch each dominate its own (objectives minimized; a trial that stopped earlier counts with its last)."""

    startup_trials: int = STARTUP_TRIALS
    warmup_epochs: int = 1
    fraction: float = 0.5

    def __call__(self, study: optuna.Study, epoch: int, point: tuple[float, ...]) -> bool:
        if epoch < self.warmup_epochs:
            return False
        reached = [curve[max(e for e in curve if e <= epoch)] for r in records(study)
                   if r.state == "complete" and (curve := r.intermediate) and min(curve) <= epoch]
        if len(reached) < self.startup_trials:
            return False
        return sum(dominates(other, point) for other in reached) >= self.fraction * len(reached)


def dominance_rule(pruner: str,
                   warmup_epochs: int) -> Callable[[optuna.Study, int, tuple[float, ...]], bool] | None:
    return DominancePruner(warmup_epochs=warmup_epochs) if pruner == "dominance" else None


class _Grid(optuna.samplers.GridSampler):
    """Optuna's grid sampler, less its call to `study.stop()` once every point was tried: that call works inside
    `study.optimize` alone and raises in the ask-and-tell loop the study runs (search/study.py), which stops on its
    own trial budget and skips a point tried again as a duplicate."""

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, state: optuna.trial.TrialState,
                    values: Sequence[float] | None) -> None:
        return None
