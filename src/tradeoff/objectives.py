"""Objectives and constraints by the name of the measured value they read: the one table to extend when a new
quantity (cost per prediction, energy) becomes something to minimize or to bound.

Measured values are keyed like `latency_ms.p50@b1`, `size_bytes`, `macs`, `metric`, `metric_drop`,
`cost_usd_per_million@b1`; a latency or cost objective or constraint reads the task's first batch size.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# objective name in a task file -> measured value it minimizes ("metric" is negated where higher is better)
OBJECTIVES: dict[str, str] = {
    "latency": "latency_ms.p50@b{batch}",
    "size": "size_bytes",
    "metric": "metric",
    "macs": "macs",
    "peak_memory": "peak_memory_bytes",
    "cost": "cost_usd_per_million@b{batch}",  # needs the task's cost.usd_per_hour (insight/cost.py)
}
# objectives the sampler is told as a ratio to the baseline that the worker measuring the trial timed itself, so
# that trials timed on different machines (or by one machine at different moments) compare fairly
RELATIVE: dict[str, str] = {"latency": "latency_ratio.p50@b{batch}", "cost": "cost_ratio@b{batch}"}
# constraint name in a task file -> measured value it bounds from above
CONSTRAINTS: dict[str, str] = {
    "max_metric_drop": "metric_drop",
    "max_latency_ms": "latency_ms.p50@b{batch}",
    "max_size_bytes": "size_bytes",
    "max_cost_per_million": "cost_usd_per_million@b{batch}",
}

# objective -> how a reader says it got better or worse, for values where lower is better
CHANGE_WORDS: dict[str, tuple[str, str]] = {
    "latency": ("faster", "slower"),
    "size": ("smaller", "larger"),
    "macs": ("fewer multiply-adds", "more multiply-adds"),
    "peak_memory": ("less memory", "more memory"),
    "cost": ("cheaper", "more expensive"),
}

Values = Mapping[str, float | None]


def times(ratio: float, better: str, worse: str) -> str:
    """A ratio where above 1 is better, as a reader says it: '2.31x faster', '1.60x slower', never '0.62x faster'."""
    return f"{ratio:.2f}x {better}" if ratio >= 1 else f"{1 / ratio:.2f}x {worse}"


def describe_change(objective: str, baseline: float, candidate: float) -> str:
    """A candidate's minimized objective value against the baseline's, in words ('1.60x slower')."""
    if objective not in CHANGE_WORDS:  # the metric (negated where higher is better): a difference, not a ratio
        return f"metric {'better' if candidate < baseline else 'worse'} by {abs(candidate - baseline):.4g}"
    if candidate <= 0 or baseline <= 0:
        return f"{objective} {candidate:.4g} against {baseline:.4g}"
    return times(baseline / candidate, *CHANGE_WORDS[objective])


def sampled_names(objectives: Iterable[str], higher_is_better: bool) -> list[str]:
    """What each entry of the vector a sampler is told measures (`minimized(..., relative=True)`), as a tracker
    names it: 'latency_ratio', 'size_bytes', 'negated_metric' where a higher metric is better."""
    names = []
    for objective in objectives:
        name = RELATIVE.get(objective, OBJECTIVES[objective]).split(".")[0].split("@")[0]
        names.append(f"negated_{name}" if objective == "metric" and higher_is_better else name)
    return names


def value_key(template: str, first_batch: int) -> str:
    return template.format(batch=first_batch)


def minimized(objectives: Iterable[str], values: Values, first_batch: int, higher_is_better: bool,
              relative: bool = False) -> tuple[float, ...]:
    """The objective vector with every entry to be minimized; what was not measured counts as worst. `relative`:
    the vector a sampler is told, latency as the ratio to the baseline (RELATIVE), not in ms."""
    vector = []
    for objective in objectives:
        template = RELATIVE.get(objective, OBJECTIVES[objective]) if relative else OBJECTIVES[objective]
        value = values.get(value_key(template, first_batch))
        if value is None:
            vector.append(float("inf"))
        else:
            vector.append(-value if objective == "metric" and higher_is_better else float(value))
    return tuple(vector)


@dataclass(frozen=True)
class Violation:
    constraint: str
    limit: float
    value: float
    missed_by: float

    @property
    def relative_miss(self) -> float:
        """How far past its limit the value is, as a fraction of the limit (for picking the nearest miss)."""
        return self.missed_by / max(abs(self.limit), 1e-12)


def violations(limits: Mapping[str, float | None], values: Values, first_batch: int) -> list[Violation]:
    """Each constraint the values break; a value not measured (None) cannot break its constraint."""
    broken = []
    for name, limit in limits.items():
        value = values.get(value_key(CONSTRAINTS[name], first_batch))
        if limit is not None and value is not None and value > limit:
            broken.append(Violation(constraint=name, limit=float(limit), value=float(value),
                                    missed_by=float(value) - float(limit)))
    return broken
