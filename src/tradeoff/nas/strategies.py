"""Search strategies for architecture search as Optuna samplers, so one study loop runs every strategy under the
same trial budget, storage and pruning: regularized evolution and a REINFORCE controller here; random and TPE are
Optuna's own.

Both sample define-by-run, one parameter at a time, so conditional parameters (`width_2` only when depth >= 3)
need nothing special. Both learn only from COMPLETE trials: pruned and failed trials carry no comparable value and
are skipped. Both optimize one objective and refuse a multi-objective study (use NSGA-II or TPE there); they
follow the study's direction. Seeded samplers give the same sequence of parameters for the same sequence of
results.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
)
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from tradeoff.errors import ConfigError


def _single_objective(study: Study, strategy: str) -> None:
    if len(study.directions) > 1:
        raise ConfigError(f"{strategy} optimizes one objective, and this study has {len(study.directions)}",
                          "use nsga2 or tpe for several objectives, or make the others constraints")


def _completed(study: Study) -> list[FrozenTrial]:
    """Finished trials with a value, in the order they were started: what a strategy may learn from."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted(trials, key=lambda t: t.number)


def _seeds(seed: int | None, count: int) -> list[int | None]:
    """Independent seeds for a strategy's random streams, all from the one seed a user gives."""
    if seed is None:
        return [None] * count
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(count)]


class _OneAtATime(BaseSampler):
    """A sampler that draws every parameter on its own as the trial asks for it (define-by-run), with no joint
    (relative) sampling: what both strategies here are."""

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}


@dataclass
class _Mutation:
    """The plan of one evolution trial: the parent's parameters, with `mutated` redrawn (None: a random trial)."""

    parent: dict[str, Any] | None
    mutated: str | None


class RegularizedEvolution(_OneAtATime):
    """Aging evolution (Real et al. 2019, "Regularized Evolution for Image Classifier Architecture Search").

    Until `population` trials have completed every trial is random. After that the population is the
    `population` most recent completed trials (by trial number: the oldest leaves as a new one comes, which is the
    regularization); a tournament of `tournament` of them, drawn at random, picks the best, and the new trial copies
    its parameters with exactly one, drawn at random, changed. A parameter the parent never had (a block its depth
    did not reach) is drawn at random.
    """

    def __init__(self, population: int = 20, tournament: int = 5, seed: int | None = None) -> None:
        if not 1 <= tournament <= population:
            raise ConfigError(f"evolution needs 1 <= tournament <= population, got tournament {tournament} and "
                              f"population {population}", "e.g. population: 20, tournament: 5")
        self.population, self.tournament = population, tournament
        random_seed, choice_seed = _seeds(seed, 2)
        self._random = RandomSampler(seed=random_seed)
        self._rng = np.random.RandomState(choice_seed)
        self._plans: dict[int, _Mutation] = {}

    def reseed_rng(self) -> None:
        self._random.reseed_rng()
        self._rng = np.random.RandomState()

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        _single_objective(study, "regularized evolution")
        completed = _completed(study)
        if len(completed) < self.population:
            self._plans[trial.number] = _Mutation(None, None)
            return
        population = completed[-self.population:]
        contenders = [population[i] for i in self._rng.choice(len(population), self.tournament, replace=False)]
        pick = min if study.direction == StudyDirection.MINIMIZE else max
        parent = pick(contenders, key=lambda t: t.value)  # type: ignore[arg-type, return-value]
        mutable = sorted(name for name, d in parent.distributions.items() if not d.single())
        mutated = mutable[self._rng.randint(len(mutable))] if mutable else None
        self._plans[trial.number] = _Mutation(dict(parent.params), mutated)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        plan = self._plans.get(trial.number, _Mutation(None, None))
        if plan.parent is None or param_name not in plan.parent:
            return self._random.sample_independent(study, trial, param_name, param_distribution)
        inherited = plan.parent[param_name]
        if not param_distribution._contains(param_distribution.to_internal_repr(inherited)):
            return self._random.sample_independent(study, trial, param_name, param_distribution)
        if param_name != plan.mutated:
            return inherited
        if isinstance(param_distribution, CategoricalDistribution):
            others = [c for c in param_distribution.choices if c != inherited]
            return others[self._rng.randint(len(others))]
        if isinstance(param_distribution, IntDistribution) and not param_distribution.log:
            step = param_distribution.step
            others = [v for v in range(param_distribution.low, param_distribution.high + 1, step) if v != inherited]
            return others[self._rng.randint(len(others))]
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._plans.pop(trial.number, None)


class _Actions:
    """A distribution as a finite set of actions for the policy: a categorical's choices, a small int range's
    values, otherwise `bins` equal bins of the (log) range, a value drawn uniformly inside the chosen bin."""

    def __init__(self, distribution: BaseDistribution, bins: int) -> None:
        self.distribution = distribution
        self.values: list[Any] | None = None
        if isinstance(distribution, CategoricalDistribution):
            self.values = list(distribution.choices)
        elif isinstance(distribution, IntDistribution) and not distribution.log and \
                (distribution.high - distribution.low) // distribution.step + 1 <= bins:
            self.values = list(range(distribution.low, distribution.high + 1, distribution.step))
        assert isinstance(distribution, CategoricalDistribution | IntDistribution | FloatDistribution)
        self.count = len(self.values) if self.values is not None else bins

    def _edges(self) -> tuple[float, float, bool]:
        d = self.distribution
        assert isinstance(d, IntDistribution | FloatDistribution)
        return (np.log(d.low), np.log(d.high), True) if d.log else (float(d.low), float(d.high), False)

    def value(self, action: int, rng: np.random.RandomState) -> Any:
        if self.values is not None:
            return self.values[action]
        low, high, log = self._edges()
        width = (high - low) / self.count
        point = low + width * (action + rng.uniform())
        value = float(np.exp(point)) if log else point
        d = self.distribution
        assert isinstance(d, IntDistribution | FloatDistribution)
        if isinstance(d, IntDistribution):
            return int(min(d.high, max(d.low, d.low + round((value - d.low) / d.step) * d.step)))
        if d.step is not None:
            value = d.low + round((value - d.low) / d.step) * d.step
        return float(min(d.high, max(d.low, value)))

    def action(self, value: Any) -> int:
        if self.values is not None:
            return self.values.index(value)
        low, high, log = self._edges()
        point = np.log(value) if log else float(value)
        return int(min(self.count - 1, max(0, (point - low) / max(high - low, 1e-300) * self.count)))


class Reinforce(_OneAtATime):
    """A REINFORCE controller (Williams 1992; the policy-gradient NAS of Zoph & Le 2017 without the RNN): an
    independent softmax policy over each parameter's actions, keyed by the parameter's name and distribution.

    Before each trial the policy learns from every completed trial it has not seen, in trial order: the reward is
    the objective (negated when minimizing), the advantage is the reward minus a moving-average baseline (decay
    `baseline_decay`), divided by the rewards' standard deviation so that `lr` does not depend on the objective's
    units, and each parameter the trial used moves its logits by lr * advantage * grad log pi(action). A
    categorical or small int range is learned value by value; a float (or an int range of more than `bins`
    values) is learned at the resolution of `bins` equal bins of its (log) range, a value drawn uniformly inside
    the chosen bin.
    """

    def __init__(self, lr: float = 0.3, baseline_decay: float = 0.9, bins: int = 8, seed: int | None = None) -> None:
        if lr <= 0 or not 0 <= baseline_decay < 1 or bins < 2:
            raise ConfigError(f"reinforce needs lr > 0, 0 <= baseline_decay < 1 and bins >= 2, got lr {lr}, "
                              f"baseline_decay {baseline_decay}, bins {bins}")
        self.lr, self.baseline_decay, self.bins = lr, baseline_decay, bins
        self._rng = np.random.RandomState(_seeds(seed, 1)[0])
        self._logits: dict[tuple[str, str], np.ndarray] = {}
        self._learned: set[int] = set()
        self._baseline: float | None = None
        self._rewards: list[float] = []

    def reseed_rng(self) -> None:
        self._rng = np.random.RandomState()

    def _policy(self, name: str, distribution: BaseDistribution) -> tuple[np.ndarray, _Actions]:
        actions = _Actions(distribution, self.bins)
        key = (name, distribution_to_json(distribution))
        return self._logits.setdefault(key, np.zeros(actions.count)), actions

    def probabilities(self, name: str, distribution: BaseDistribution) -> np.ndarray:
        """The policy's current probability of each action of parameter `name` (for reports and tests)."""
        logits, _ = self._policy(name, distribution)
        exp = np.exp(logits - logits.max())
        return exp / exp.sum()

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        _single_objective(study, "reinforce")
        sign = -1.0 if study.direction == StudyDirection.MINIMIZE else 1.0
        for done in _completed(study):
            if done.number not in self._learned:
                self._learned.add(done.number)
                self._learn(done, sign * float(done.value))  # type: ignore[arg-type]

    def _learn(self, trial: FrozenTrial, reward: float) -> None:
        self._rewards.append(reward)
        if self._baseline is None:
            self._baseline = reward
            return
        advantage = (reward - self._baseline) / (float(np.std(self._rewards)) + 1e-12)
        self._baseline = self.baseline_decay * self._baseline + (1 - self.baseline_decay) * reward
        for name, distribution in trial.distributions.items():
            if distribution.single():
                continue
            logits, actions = self._policy(name, distribution)
            gradient = -self.probabilities(name, distribution)
            gradient[actions.action(trial.params[name])] += 1.0
            logits += self.lr * advantage * gradient

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        _, actions = self._policy(param_name, param_distribution)
        probabilities = self.probabilities(param_name, param_distribution)
        return actions.value(int(self._rng.choice(len(probabilities), p=probabilities)), self._rng)


