"""Pareto selection under constraints: which trials are finalists and which one ships."""

from __future__ import annotations

from tradeoff.search.record import TrialRecord
from tradeoff.search.select import binding, choose, feasible_points, pareto_front, pareto_layers

NO_LIMITS = {"max_metric_drop": None, "max_latency_ms": None, "max_size_bytes": None}
BASELINE = {"latency_ms.p50@b1": 1.0, "size_bytes": 1000.0, "metric": 0.95}


def _values(latency: float, size: float, metric: float = 0.95) -> dict[str, float | None]:
    return {"latency_ms.p50@b1": latency, "size_bytes": size, "metric": metric, "metric_drop": 0.95 - metric}


def _choose(candidates: dict[int, dict[str, float | None]], objectives, limits=NO_LIMITS):  # noqa: ANN001, ANN202
    return choose(candidates, BASELINE, objectives, limits, first_batch=1, higher_is_better=True)


def test_pareto_front_keeps_only_non_dominated_points() -> None:
    points = {0: (1.0, 5.0), 1: (2.0, 2.0), 2: (3.0, 3.0), 3: (5.0, 1.0), 4: (1.0, 6.0)}
    assert pareto_front(points) == [0, 1, 3]


def test_a_model_slower_than_the_baseline_never_ships_to_a_user_who_named_latency_first() -> None:
    # 2x smaller but 1.6x slower: the baseline ships, and the report says why in words.
    choice = _choose({0: _values(1.6, 500)}, ["latency", "size"])
    assert choice.trial is None and choice.excluded[0] == "1.60x slower than the baseline"
    # The same candidate ships where size comes first.
    assert _choose({0: _values(1.6, 500)}, ["size", "latency"]).trial == 0


def test_near_tie_on_the_first_objective_is_settled_by_the_second() -> None:
    # 2% smaller but 3.5x slower loses when size comes first.
    assert _choose({0: _values(0.021, 95), 1: _values(0.074, 93.1)}, ["size", "latency"]).trial == 0
    assert _choose({0: _values(0.021, 95), 1: _values(0.074, 50)}, ["size", "latency"]).trial == 1


def test_what_stays_tied_goes_to_the_better_metric_not_to_a_hair_of_latency() -> None:
    # 0.0001 ms faster, the same size within 5%, half a point less accurate: the more accurate one ships.
    choice = _choose({0: _values(0.5000, 400, metric=0.945), 1: _values(0.5001, 410, metric=0.950)},
                     ["latency", "size"])
    assert choice.trial == 1 and choice.excluded[0] == "tied with trial 1, whose metric is better"
    # Clearly smaller beats a hair faster.
    assert _choose({0: _values(0.5000, 800), 1: _values(0.5001, 400)}, ["latency", "size"]).trial == 1


def test_weights_trade_objectives_and_the_baseline_ships_when_nothing_beats_it() -> None:
    smaller_but_slower = {0: _values(1.5, 500)}
    assert _choose(smaller_but_slower, {"latency": 1, "size": 1}).trial == 0  # 2x smaller outweighs 1.5x slower
    choice = _choose(smaller_but_slower, {"latency": 3, "size": 1})
    assert choice.trial is None and "no better than the baseline by the weighted objectives" in choice.excluded[0]
    assert choice.rule.startswith("weights latency 3, size 1")


def test_a_finalist_that_breaks_a_constraint_once_re_timed_does_not_ship() -> None:
    limits = {**NO_LIMITS, "max_latency_ms": 0.5}
    choice = _choose({0: _values(0.6, 100), 1: _values(0.45, 900)}, ["size", "latency"], limits)
    assert choice.trial == 1 and choice.excluded[0] == "max_latency_ms: 0.6 > 0.5"


def test_finalists_come_front_by_front() -> None:
    points = {0: (1.0, 1.0), 1: (2.0, 2.0), 2: (3.0, 1.5), 3: (4.0, 4.0)}
    assert pareto_layers(points, 1) == [0]
    assert pareto_layers(points, 3) == [0, 1, 2]


def test_only_trials_that_met_every_constraint_are_candidates_and_the_nearest_miss_is_named() -> None:
    limits = {"max_metric_drop": 0.01, "max_latency_ms": None, "max_size_bytes": 1000}
    records = [
        TrialRecord(0, "complete", {}, objectives=(1.0,), values={"metric_drop": 0.0, "size_bytes": 900}),
        TrialRecord(1, "complete", {}, objectives=(0.5,), values={"metric_drop": 0.0, "size_bytes": 1500},
                    violations={"max_size_bytes": 500.0}),
        TrialRecord(2, "pruned", {}, values={"metric_drop": 0.05, "size_bytes": 800},
                    violations={"max_metric_drop": 0.04}),
    ]
    assert feasible_points(records) == {0: (1.0,)}
    nearest = binding(records[1:], limits, first_batch=1)
    assert (nearest.constraint, nearest.nearest_trial) == ("max_size_bytes", 1)
    assert nearest.missed_by == 500.0 and nearest.limit == 1000
