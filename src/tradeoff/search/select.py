"""Which trials matter after a study: the Pareto front of feasible ones, the finalists worth re-timing beside the
baseline, the one that ships (chosen on validation), and, when none can, the constraint that bound and the
candidate that came nearest."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tradeoff.objectives import Values, describe_change, minimized, violations
from tradeoff.search.record import TrialRecord

# Objective values within this fraction of the best count as ties (timing noise on a shared machine is 2-5%).
TIE_TOLERANCE = 0.05


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


@dataclass(frozen=True)
class Choice:
    """The model that ships (None: the baseline), the rule that chose it in words, and why each other finalist
    could not ship."""

    trial: int | None
    rule: str
    excluded: dict[int, str]


def choose(candidates: Mapping[int, Values], baseline: Values, objectives: Sequence[str] | Mapping[str, float],
           limits: Mapping[str, float | None], first_batch: int, higher_is_better: bool,
           tolerance: float = TIE_TOLERANCE) -> Choice:
    """The finalist to ship, by a rule a user can predict, from validation values alone (latency re-timed beside
    the baseline). The test split decides nothing.

    A candidate that breaks a constraint never ships. Objectives as a list are priorities: a candidate worse than
    the baseline on the first objective is not shipped (a user who named latency first does not get a slower
    model), then each objective in turn keeps the candidates within `tolerance` of the best, and what is still
    tied goes to the better metric. Objectives as a mapping are weights: the lowest weighted mean log-ratio to
    the baseline ships if it beats the baseline at all; scores within `tolerance` go to the better metric.
    """
    names = list(objectives)
    vectors = {n: minimized(names, v, first_batch, higher_is_better) for n, v in candidates.items()}
    base = minimized(names, baseline, first_batch, higher_is_better)
    excluded: dict[int, str] = {}
    for number, values in candidates.items():
        if broken := violations(limits, values, first_batch):
            excluded[number] = "; ".join(f"{v.constraint}: {v.value:.4g} > {v.limit:.4g}" for v in broken)
    # Each stage: what it is called, each candidate's value on it (lower is better), the band of a tie.
    stages: list[tuple[str, dict[int, float], float]]
    if isinstance(objectives, Mapping):
        total = sum(objectives.values())
        scores = {n: sum(objectives[name] / total * _log_ratio(value, base[i])
                         for i, (name, value) in enumerate(zip(names, vector, strict=True)))
                  for n, vector in vectors.items()}
        for number, score in scores.items():
            if number not in excluded and score >= 0:
                excluded[number] = f"no better than the baseline by the weighted objectives (score {score:+.3f})"
        stages = [("the weighted score", scores, math.log1p(tolerance))]
        rule = (f"weights {', '.join(f'{k} {w:g}' for k, w in objectives.items())}: the lowest weighted mean "
                f"log-ratio to the baseline; scores within {tolerance:.0%} go to the better metric")
    else:
        for number, vector in vectors.items():
            if number not in excluded and vector[0] > base[0]:
                excluded[number] = f"{describe_change(names[0], base[0], vector[0])} than the baseline"
        stages = [(name, {n: v[i] for n, v in vectors.items()}, 0.0 if name == "metric" else tolerance)
                  for i, name in enumerate(names)]
        rule = (f"priority {', '.join(names)}: never worse than the baseline on {names[0]}, values within "
                f"{tolerance:.0%} of the best are ties, ties go to the better metric")
    remaining = [n for n in candidates if n not in excluded]
    for label, value, band in stages:
        if not remaining:
            break
        best = min(value[n] for n in remaining)
        margin = band if isinstance(objectives, Mapping) else abs(best) * band
        for number in [n for n in remaining if value[n] > best + margin]:
            excluded[number] = f"outranked on {label}"
            remaining.remove(number)
    metric = {n: minimized(["metric"], v, first_batch, higher_is_better)[0] for n, v in candidates.items()}
    if not remaining:
        return Choice(trial=None, rule=rule, excluded=excluded)
    chosen = min(remaining, key=lambda n: (metric[n], vectors[n], n))
    for number in remaining:
        if number != chosen:
            why = "whose metric is better" if metric[number] > metric[chosen] else "as good on the metric, ahead raw"
            excluded[number] = f"tied with trial {chosen}, {why}"
    return Choice(trial=chosen, rule=rule, excluded=excluded)


def _log_ratio(candidate: float, baseline: float) -> float:
    """How much worse than the baseline, alike for gains and losses (2x faster and 2x slower weigh the same)."""
    if candidate > 0 and baseline > 0:
        return math.log(candidate / baseline)
    return (candidate - baseline) / max(abs(baseline), 1e-12)


def feasible_points(records: Sequence[TrialRecord]) -> dict[int, tuple[float, ...]]:
    """The objective vectors (as the sampler was told them) of the trials that met every constraint."""
    return {r.number: r.objectives for r in records if r.feasible and r.objectives is not None}


@dataclass(frozen=True)
class Binding:
    """Why no candidate shipped: the constraint that bound and the nearest miss (on validation)."""

    constraint: str
    limit: float
    nearest_trial: int | None
    nearest_value: float | None
    missed_by: float | None


def binding(records: Sequence[TrialRecord], limits: Mapping[str, float | None], first_batch: int) -> Binding:
    """The constraint that stopped every candidate on validation, and the candidate that came nearest to it."""
    missed = [(r.number, broken) for r in records if r.counted
              for broken in [violations(limits, r.values, first_batch)] if broken]
    if not missed:
        return Binding(constraint="no candidate could be built or measured", limit=0.0, nearest_trial=None,
                       nearest_value=None, missed_by=None)
    number, broken = min(missed, key=lambda item: max(v.relative_miss for v in item[1]))
    worst = max(broken, key=lambda v: v.relative_miss)
    return Binding(constraint=worst.constraint, limit=worst.limit, nearest_trial=number, nearest_value=worst.value,
                   missed_by=worst.missed_by)
