"""Objectives and constraints by the name of the measured value they read: the one table to extend when a new
quantity (cost per prediction, energy) becomes something to minimize or to bound.

Measured values are keyed like `latency_ms.p50@b1`, `size_bytes`, `macs`, `metric`, `metric_drop`,
`cost_usd_per_million@b1`. A latency or cost objective reads the task's first batch size, or the one it names:
`latency@b32` reads batch 32, so a model served at several batch sizes can weigh each (`{latency@b1: 1,
latency@b32: 1}`). Constraints read the first batch size.
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
# objectives measured at each batch size, which a task may name with one: `latency@b32`
BATCHED = ("latency", "cost")
# objectives the sampler is told as a ratio to the baseline that the worker measuring the trial timed itself, so
# that trials timed on different machines (or by one machine at different moments) compare fairly
RELATIVE: dict[str, str] = {"latency": "latency_ratio.p50@b{batch}", "cost": "cost_ratio@b{batch}"}
# constraint name in a task file -> measured value it bounds from above
CONSTRAINTS: dict[str, str] = {
    "max_metric_drop": "metric_drop",
    "max_latency_ms": "latency_ms.p50@b{batch}",
    "max_latency_ratio": "latency_ratio.p50@b{batch}",
    "max_size_bytes": "size_bytes",
    "max_params": "params",
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
    name, batch = parse(objective)
    if name not in CHANGE_WORDS:  # the metric (negated where higher is better): a difference, not a ratio
        return f"metric {'better' if candidate < baseline else 'worse'} by {abs(candidate - baseline):.4g}"
    if candidate <= 0 or baseline <= 0:
        return f"{objective} {candidate:.4g} against {baseline:.4g}"
    return times(baseline / candidate, *CHANGE_WORDS[name]) + (f" at batch {batch}" if batch is not None else "")


def parse(objective: str) -> tuple[str, int | None]:
    """'latency@b32' -> ('latency', 32); 'latency' -> ('latency', None), which reads the first batch size."""
    name, at, batch = objective.partition("@b")
    return (name, int(batch)) if at and batch.isdecimal() else (objective, None)


def unknown_objective(objective: str, batch_sizes: Iterable[int]) -> str | None:
    """Why a task's objective name cannot be measured, or None where it can."""
    name, batch = parse(objective)
    if name not in OBJECTIVES:
        known = ", ".join([*OBJECTIVES, *(f"{b}@b<batch size>" for b in BATCHED)])
        return f"unknown objective '{objective}'; known: {known}"
    if batch is not None and name not in BATCHED:
        return f"objective '{objective}': only {' and '.join(BATCHED)} are measured per batch size"
    if batch is not None and batch not in tuple(batch_sizes):
        return f"objective '{objective}' reads batch {batch}, which runtime.batch_sizes does not time"
    return None


def batches_read(objectives: Iterable[str], batch_sizes: tuple[int, ...]) -> tuple[int, ...]:
    """The batch sizes the latency and cost objectives read, in order: the runtime chosen for a candidate is the
    fastest over these (the first batch size where no objective names one)."""
    read = [batch or batch_sizes[0] for name, batch in map(parse, objectives) if name in BATCHED]
    return tuple(dict.fromkeys(read)) or batch_sizes[:1]


def sampled_names(objectives: Iterable[str], higher_is_better: bool) -> list[str]:
    """What each entry of the vector a sampler is told measures (`minimized(..., relative=True)`), as a tracker
    names it: 'latency_ratio', 'latency_ratio_b32', 'size_bytes', 'negated_metric' where a higher metric is
    better."""
    names = []
    for objective in objectives:
        name, batch = parse(objective)
        measured = RELATIVE.get(name, OBJECTIVES[name]).split(".")[0].split("@")[0]
        measured += f"_b{batch}" if batch is not None else ""
        names.append(f"negated_{measured}" if name == "metric" and higher_is_better else measured)
    return names


def value_key(template: str, first_batch: int) -> str:
    return template.format(batch=first_batch)


def objective_key(objective: str, first_batch: int, relative: bool = False) -> str:
    """The measured value an objective reads: `latency@b32` -> `latency_ms.p50@b32`; `relative`: the ratio to the
    baseline the sampler is told (RELATIVE) where there is one."""
    name, batch = parse(objective)
    template = RELATIVE.get(name, OBJECTIVES[name]) if relative else OBJECTIVES[name]
    return value_key(template, batch or first_batch)


def minimized(objectives: Iterable[str], values: Values, first_batch: int, higher_is_better: bool,
              relative: bool = False) -> tuple[float, ...]:
    """The objective vector with every entry to be minimized; what was not measured counts as worst. `relative`:
    the vector a sampler is told, latency as the ratio to the baseline (RELATIVE), not in ms."""
    vector = []
    for objective in objectives:
        value = values.get(objective_key(objective, first_batch, relative))
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
