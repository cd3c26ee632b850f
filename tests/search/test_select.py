"""Pareto selection under constraints: which trials are finalists and which one ships."""

from __future__ import annotations

from tradeoff.search.record import TrialRecord
from tradeoff.search.select import binding, feasible_points, pareto_front, pareto_layers, pick_best


def test_pareto_front_keeps_only_non_dominated_points() -> None:
    points = {0: (1.0, 5.0), 1: (2.0, 2.0), 2: (3.0, 3.0), 3: (5.0, 1.0), 4: (1.0, 6.0)}
    assert pareto_front(points) == [0, 1, 3]


def test_near_tie_on_the_first_objective_is_settled_by_the_second() -> None:
    # 2% smaller but 3.5x slower loses when size comes first.
    assert pick_best({0: (95.0, 0.021), 1: (93.1, 0.074)}) == 0
    assert pick_best({0: (95.0, 0.021), 1: (50.0, 0.074)}) == 1


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
    nearest = binding(records[1:], [], limits, first_batch=1)
    assert (nearest.constraint, nearest.nearest_trial, nearest.split) == ("max_size_bytes", 1, "val")
    assert nearest.missed_by == 500.0 and nearest.limit == 1000
