"""report.json's entries built from what was measured: measurements and trial records in, schema out."""

from __future__ import annotations

from dataclasses import asdict
from typing import cast

from tradeoff.config import CostSpec
from tradeoff.energy import Energy
from tradeoff.evaluation import Measurement
from tradeoff.insight.cost import Spend, prediction_cost
from tradeoff.measure import Latency
from tradeoff.metrics import Metric
from tradeoff.objectives import Violation, objective_key, violations
from tradeoff.report.schema import Energy as EnergyEntry
from tradeoff.report.schema import (
    Format,
    LatencyMs,
    Measured,
    PredictionCost,
    Ratios,
    SearchStats,
    Split,
    Trial,
    TrialState,
)
from tradeoff.report.schema import Spend as SpendEntry
from tradeoff.report.schema import Violation as ViolationEntry
from tradeoff.search.record import TrialRecord

COUNTS = ("size_bytes", "size_zstd_bytes", "params", "nonzero_params", "macs")


def latency_entry(latency: Latency) -> LatencyMs:
    return LatencyMs(p50=latency.p50_ms, p95=latency.p95_ms, batch_size=latency.batch_size,
                     threads=latency.threads, runs=latency.runs, input_shape=list(latency.input_shape))


def energy_entry(energy: Energy) -> EnergyEntry:
    return EnergyEntry(joules=energy.joules, source=energy.source, method=energy.method)


def cost_entry(latency: Latency, cost: CostSpec) -> PredictionCost:
    found = prediction_cost(latency, cost)
    return PredictionCost(predictions_per_s=found.predictions_per_s, usd_per_million=found.usd_per_million,
                          energy_per_prediction=energy_entry(found.energy) if found.energy else None)


def spend_entry(spend: Spend, watts_per_core: float) -> SpendEntry:
    return SpendEntry(wall_s=spend.wall_s, cpu_s=spend.cpu_s, peak_memory_bytes=spend.peak_memory_bytes,
                      energy=energy_entry(spend.energy(watts_per_core)))


def measured(measurement: Measurement) -> Measured:
    by_batch = {b: latency_entry(lat) for b, lat in measurement.latency.items()}
    return Measured(metric=measurement.metric, split=cast(Split, measurement.split), runtime=measurement.runtime,
                    format=cast(Format, measurement.format), latency_ms=next(iter(by_batch.values())),
                    latency_by_batch=by_batch, size_bytes=measurement.size.bytes,
                    size_zstd_bytes=measurement.size.zstd_bytes, params=measurement.params,
                    nonzero_params=measurement.nonzero_params, macs=measurement.macs,
                    peak_memory_bytes=measurement.peak_memory_bytes,
                    cost_by_batch={b: cost_entry(lat, measurement.cost) for b, lat in measurement.latency.items()})


def ratios(baseline: Measurement, candidate: Measurement, metric: Metric) -> Ratios:
    base, cand = baseline.primary_latency, candidate.primary_latency
    return Ratios(speedup=base.p50_ms / cand.p50_ms if base and cand else 1.0,
                  size_reduction=baseline.size.bytes / candidate.size.bytes,
                  size_zstd_reduction=baseline.size.zstd_bytes / candidate.size.zstd_bytes,
                  metric_drop=metric.drop(baseline.metric, candidate.metric))


def violation_entry(violation: Violation) -> ViolationEntry:
    return ViolationEntry(**asdict(violation))


def trial_entry(record: TrialRecord, limits: dict[str, float | None], first_batch: int,
                watts_per_core: float) -> Trial:
    """A trial that spent budget as report.json shows it: the recipe on the runtime and threads it was measured on,
    its values on validation, the constraints they break, and what the trial cost the machine."""
    recipe = {**(record.candidate or {"version": 1, "steps": []}),
              **({"runtime": record.runtime} if record.runtime else {}),
              **({"threads": record.threads} if record.threads else {})}
    values = record.values
    broken = violations(limits, values, first_batch) if "metric_drop" in values else []
    counts = {key: int(v) if (v := values.get(key)) is not None else None for key in COUNTS}
    return Trial(number=record.number, recipe=recipe, passes=[s["pass"] for s in recipe["steps"]],
                 state=cast(TrialState, record.state), note=record.note, metric=values.get("metric"),
                 metric_drop=values.get("metric_drop"),
                 latency_ms=latency_entry(record.latency) if record.latency else None,
                 latency_ratio=values.get(objective_key("latency", first_batch, relative=True)), **counts,
                 runtimes=record.runtimes, worker=record.worker, feasible=record.feasible,
                 violations=[violation_entry(v) for v in broken],
                 cost_usd_per_million=values.get(objective_key("cost", first_batch)),
                 spend=spend_entry(record.spend, watts_per_core) if record.spend else None)


def search_stats(records: list[TrialRecord]) -> SearchStats:
    """How the search's samples were spent (a live trial of another worker is not counted)."""
    states = [r.state for r in records]
    return SearchStats(measured=states.count("complete") + states.count("pruned"), failed=states.count("failed"),
                       skipped=states.count("skipped"), duplicates=states.count("duplicate"),
                       interrupted=states.count("interrupted"))
