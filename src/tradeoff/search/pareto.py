"""Pareto selection under constraints: which candidates are worth re-measuring on the test split."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def minimized(objectives: Sequence[str], higher_is_better: bool, latency_ms: float | None,
              size_bytes: float | None, metric: float) -> tuple[float, ...]:
    """The objective vector with every entry to be minimized; what was not measured counts as worst."""
    values = {"latency": float("inf") if latency_ms is None else latency_ms,
              "size": float("inf") if size_bytes is None else float(size_bytes),
              "metric": -metric if higher_is_better else metric}
    return tuple(values[o] for o in objectives)


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
