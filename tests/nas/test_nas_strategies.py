"""Search strategies (tradeoff.nas.strategies) as Optuna samplers, tested as algorithms on a cheap deterministic
objective with a known optimum over a conditional categorical space: at the same trial budget regularized
evolution and REINFORCE each find better architectures than random search, in either direction, with pruned and
failed trials in the study; conditional parameters appear exactly when their condition holds; a seed fixes the
sequence; a multi-objective study is refused in one line."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import optuna
import pytest

from tradeoff.errors import ConfigError
from tradeoff.nas import RegularizedEvolution, Reinforce

optuna.logging.set_verbosity(optuna.logging.WARNING)
TARGET = (2, 4, 0, 3, 1, 4)  # the best choice of each x_i; the best depth is 3 and the best width 32
BEST = 0.0
BUDGET, SEEDS = 120, range(4)
Strategy = Callable[[int], optuna.samplers.BaseSampler]
STRATEGIES: dict[str, Strategy] = {"evolution": lambda seed: RegularizedEvolution(population=10, tournament=3,
                                                                                  seed=seed),
                                   "reinforce": lambda seed: Reinforce(seed=seed)}


def distance_to_optimum(trial: optuna.Trial) -> float:
    """0 at the optimum, lower elsewhere: depth 1-4, one width per block (width_2 only when depth >= 3), six
    choices of five values; 5 * 5**6 * (1 + 5 + 25 + 125 + 625) points."""
    depth = trial.suggest_int("depth", 1, 4)
    score = -abs(depth - 3.0)
    for i in range(depth):
        score -= abs(np.log2(trial.suggest_categorical(f"width_{i}", [8, 16, 32, 64, 128]) / 32))
    for i, best in enumerate(TARGET):
        score -= abs(trial.suggest_categorical(f"x{i}", [0, 1, 2, 3, 4]) - best)
    return score


def _best_values(make: Strategy, direction: str, objective: Callable[[optuna.Trial], float] = distance_to_optimum,
                 catch: tuple[type[Exception], ...] = ()) -> list[float]:
    sign = 1.0 if direction == "maximize" else -1.0
    bests = []
    for seed in SEEDS:
        study = optuna.create_study(direction=direction, sampler=make(seed))
        study.optimize(lambda t: sign * objective(t), n_trials=BUDGET, catch=catch)
        bests.append(sign * study.best_value)
    return bests


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_evolution_and_reinforce_beat_random_search_at_the_same_budget(direction: str) -> None:
    random = np.mean(_best_values(lambda seed: optuna.samplers.RandomSampler(seed=seed), direction))
    for name, make in STRATEGIES.items():
        found = np.mean(_best_values(make, direction))
        assert found > random + 1.0, f"{name}: mean best {found} against random's {random} (optimum {BEST})"


def test_pruned_and_failed_trials_are_skipped_not_learned_from() -> None:
    def objective(trial: optuna.Trial) -> float:
        value = distance_to_optimum(trial)
        if trial.params["x0"] == 0:  # hopeless by its intermediate value, which would look like the optimum
            trial.report(100.0, step=0)
            raise optuna.TrialPruned()
        if trial.params["x1"] == 1:
            raise ValueError("this candidate does not train")
        return value

    random = np.mean(_best_values(lambda seed: optuna.samplers.RandomSampler(seed=seed), "maximize", objective,
                                  (ValueError,)))
    for name, make in STRATEGIES.items():
        found = np.mean(_best_values(make, "maximize", objective, (ValueError,)))
        assert found > random + 1.0, f"{name}: mean best {found} against random's {random}"


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_conditional_parameters_appear_exactly_when_their_condition_holds(name: str) -> None:
    study = optuna.create_study(direction="maximize", sampler=STRATEGIES[name](0))
    study.optimize(distance_to_optimum, n_trials=60)
    assert {t.params["depth"] for t in study.trials} >= {2, 3, 4}
    for trial in study.trials:
        widths = {p for p in trial.params if p.startswith("width_")}
        assert widths == {f"width_{i}" for i in range(trial.params["depth"])}
        assert ("width_2" in trial.params) == (trial.params["depth"] >= 3)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_a_seed_gives_the_same_sequence_and_another_seed_another(name: str) -> None:
    def sequence(seed: int) -> list[dict[str, object]]:
        study = optuna.create_study(direction="maximize", sampler=STRATEGIES[name](seed))
        study.optimize(distance_to_optimum, n_trials=40)
        return [t.params for t in study.trials]

    assert sequence(7) == sequence(7) != sequence(8)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_a_multi_objective_study_is_refused_in_one_line(name: str) -> None:
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=STRATEGIES[name](0))
    with pytest.raises(ConfigError, match="optimizes one objective, and this study has 2") as error:
        study.optimize(lambda t: (distance_to_optimum(t), 1.0), n_trials=2)
    assert "\n" not in str(error.value)


def test_reinforce_learns_a_continuous_parameter_by_bins() -> None:
    sampler = Reinforce(seed=0, bins=8)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    study.optimize(lambda t: abs(np.log10(t.suggest_float("lr", 1e-5, 1e-1, log=True)) + 2.25), n_trials=150)
    probabilities = sampler.probabilities("lr", optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True))
    # 10**-2.25 is the middle of the sixth of eight log bins of [1e-5, 1e-1] (each half a decade wide)
    assert int(np.argmax(probabilities)) == 5 and probabilities[5] > 0.5
    assert all(1e-5 <= t.params["lr"] <= 1e-1 for t in study.trials)


def test_evolution_changes_exactly_one_parameter_of_a_parent_once_the_population_is_full() -> None:
    def flat(trial: optuna.Trial) -> float:
        return -sum(abs(trial.suggest_categorical(f"x{i}", [0, 1, 2, 3, 4]) - best) for i, best in enumerate(TARGET))

    study = optuna.create_study(direction="maximize", sampler=RegularizedEvolution(population=10, tournament=3,
                                                                                   seed=0))
    study.optimize(flat, n_trials=40)
    for child in study.trials[10:]:
        earlier = study.trials[:child.number][-10:]  # the population it was bred from: the 10 most recent
        changes = [sum(child.params[k] != parent.params[k] for k in child.params) for parent in earlier]
        assert 1 in changes, f"trial {child.number} is no one-parameter mutation of the population"


def test_reinforce_concentrates_its_policy_on_the_best_choices() -> None:
    choices = optuna.distributions.CategoricalDistribution([0, 1, 2, 3, 4])
    right = []
    for seed in SEEDS:
        sampler = Reinforce(seed=seed)
        optuna.create_study(direction="maximize", sampler=sampler).optimize(distance_to_optimum, n_trials=BUDGET)
        preferred = [int(np.argmax(sampler.probabilities(f"x{i}", choices))) for i in range(len(TARGET))]
        right.append(sum(p == best for p, best in zip(preferred, TARGET, strict=True)))
    assert np.mean(right) >= 4, right  # of 6 choices; a policy that learned nothing gets 1.2 right on average


def test_evolution_draws_afresh_where_a_parents_value_left_the_space() -> None:
    def narrowing(trial: optuna.Trial) -> float:  # the depth range shrinks after 15 trials (a user edited the space)
        depth = trial.suggest_int("depth", 1, 4 if trial.number < 15 else 2)
        return depth + trial.suggest_categorical("x", [0, 1, 2])

    study = optuna.create_study(direction="maximize", sampler=RegularizedEvolution(population=5, tournament=2,
                                                                                   seed=0))
    study.optimize(narrowing, n_trials=30)
    assert all(t.params["depth"] <= 2 for t in study.trials[15:])
    assert max(t.params["depth"] for t in study.trials[:15]) > 2  # so the late parents did hold values now outside
