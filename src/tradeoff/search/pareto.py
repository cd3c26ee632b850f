"""Pareto selection under constraints: which candidates are worth re-measuring on the test split."""

from __future__ import annotations

from collections.abc import Sequence


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """`a` is no worse than `b` everywhere and better somewhere (all objectives minimized)."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


def pareto_front(points: dict[int, Sequence[float]]) -> list[int]:
    """Keys of the non-dominated points, ordered by their first objective."""
    front = [k for k, p in points.items() if not any(dominates(q, p) for j, q in points.items() if j != k)]
    return sorted(front, key=lambda k: tuple(points[k]))
