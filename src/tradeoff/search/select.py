"""Which trials matter after a study: the Pareto front of feasible ones, the finalists worth re-measuring, the
one that ships, and, when none can, the constraint that bound and the candidate that came nearest."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tradeoff.objectives import Violation, violations
from tradeoff.search.record import TrialRecord


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """`a` is no worse than `b` everywhere and better somewhere (all objectives minimized)."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


def pareto_front(points: Mapping[int, Sequence[float]]) -> list[int]:
    """Keys of the non-dominated points, ordered by their first objective."""
    front = [k for k, p in points.items() if not any(dominates(q, p) for j, q in points.items() if j != k)]
    return sorted(front, key=lambda k: tuple(points[k]))


def pareto_layers(points: Mapping[int, Sequence[float]], count: int) -> list[int]:
    """Up to `count` keys, front by front (non-dominated sorting): when the first front's members fail on
    the test split, the next-best trade-offs are already among the finalists."""
    remaining, ordered = dict(points), list[int]()
    while remaining and len(ordered) < count:
        front = pareto_front(remaining)
        ordered += front
        remaining = {k: p for k, p in remaining.items() if k not in front}
    return ordered[:count]


def pick_best(points: Mapping[int, Sequence[float]], tolerance: float = 0.05) -> int:
    """Best by the objectives in priority order, where values within `tolerance` of the best count as ties.

    Lexicographic order on raw values would trade a 3x slow-down for a 1% smaller file when size comes
    first; a near-tie on the first objective is settled by the next one instead.
    """
    remaining = dict(points)
    for index in range(len(next(iter(points.values())))):
        best = min(p[index] for p in remaining.values())
        margin = abs(best) * tolerance
        remaining = {k: p for k, p in remaining.items() if p[index] <= best + margin}
    return min(remaining, key=lambda k: tuple(remaining[k]))


def feasible_points(records: Sequence[TrialRecord]) -> dict[int, tuple[float, ...]]:
    """The objective vectors (as the sampler was told them) of the trials that met every constraint."""
    return {r.number: r.objectives for r in records if r.feasible and r.objectives is not None}


@dataclass(frozen=True)
class Binding:
    """Why no candidate shipped: the constraint that bound and the nearest miss."""

    constraint: str
    limit: float
    nearest_trial: int | None
    nearest_value: float | None
    missed_by: float | None
    split: str


def binding(records: Sequence[TrialRecord], finalists: Sequence[tuple[int, list[Violation]]],
            limits: Mapping[str, float | None], first_batch: int) -> Binding:
    """The constraint that stopped every candidate (on test where finalists were measured, else on validation),
    and the candidate that came nearest to meeting it."""
    if finalists:
        split, missed = "test", [(number, broken) for number, broken in finalists if broken]
    else:
        split = "val"
        missed = [(r.number, broken) for r in records if r.counted
                  for broken in [violations(limits, r.values, first_batch)] if broken]
    if not missed:
        return Binding(constraint="no candidate could be built or measured", limit=0.0, nearest_trial=None,
                       nearest_value=None, missed_by=None, split="val")
    number, broken = min(missed, key=lambda item: max(v.relative_miss for v in item[1]))
    worst = max(broken, key=lambda v: v.relative_miss)
    return Binding(constraint=worst.constraint, limit=worst.limit, nearest_trial=number, nearest_value=worst.value,
                   missed_by=worst.missed_by, split=split)
