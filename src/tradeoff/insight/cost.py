"""What a prediction costs, and what the optimization itself cost.

A batch of b timed at a median of p50 ms makes b / p50 predictions per ms on the task's threads, so a machine
priced at P USD per hour (the task's `cost.usd_per_hour`) spends P * p50 / (3.6 * b) USD per million predictions.
Energy per prediction is the energy of the timed calls over the predictions they made: measured by RAPL where
readable, else estimated from their CPU seconds (energy.py), and labelled as it was found.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tradeoff.config import CostSpec
from tradeoff.energy import POWERCAP, Energy, Meter, energy_of
from tradeoff.measure import Latency, rss_bytes

MS_PER_HOUR = 3.6e6


def usd_per_million(latency: Latency, usd_per_hour: float) -> float:
    """USD per million predictions at the latency's batch size: the machine's price per hour over the predictions
    it makes in an hour (b / p50 per ms)."""
    per_hour = latency.batch_size / latency.p50_ms * MS_PER_HOUR
    return usd_per_hour / per_hour * 1e6


def cost_values(latency: Mapping[int, Latency], usd_per_hour: float | None,
                baseline: Mapping[int, Latency] | None = None) -> dict[str, float | None]:
    """Cost per million predictions by name at each batch size (`cost_usd_per_million@b<n>`), and against a
    `baseline` timed by the same process its ratio (`cost_ratio@b<n>`: at one price, the latencies' ratio), what a
    sampler is told where workers on machines of different speeds share a study. None without a price."""
    if usd_per_hour is None:
        return {}
    values: dict[str, float | None] = {}
    for batch, timed in latency.items():
        values[f"cost_usd_per_million@b{batch}"] = usd_per_million(timed, usd_per_hour)
        if baseline is not None and (base := baseline.get(batch)) is not None:
            values[f"cost_ratio@b{batch}"] = usd_per_million(timed, usd_per_hour) / usd_per_million(base, usd_per_hour)
    return values


@dataclass(frozen=True)
class PredictionCost:
    """One prediction at one batch size: throughput, price (None without `cost.usd_per_hour`) and energy (None where
    the timing kept no CPU seconds: a latency recorded before they were)."""

    predictions_per_s: float
    usd_per_million: float | None
    energy: Energy | None


def prediction_cost(latency: Latency, cost: CostSpec) -> PredictionCost:
    predictions = latency.runs * latency.batch_size
    energy = (energy_of(latency.cpu_s, latency.energy_j, cost.watts_per_core, share=1 / predictions)
              if latency.cpu_s is not None else None)
    return PredictionCost(
        predictions_per_s=latency.batch_size / latency.p50_ms * 1000.0,
        usd_per_million=usd_per_million(latency, cost.usd_per_hour) if cost.usd_per_hour is not None else None,
        energy=energy)


@dataclass(frozen=True)
class Spend:
    """What a stretch of the optimization cost the machine that ran it (this process: every thread, and the child
    processes it waited for). Peak memory is the process's largest resident size seen during it (sampled);
    `energy_j` is RAPL's count, None where no counter was readable (`energy` then estimates it)."""

    wall_s: float
    cpu_s: float
    peak_memory_bytes: int | None
    energy_j: float | None

    def energy(self, watts_per_core: float) -> Energy:
        return energy_of(self.cpu_s, self.energy_j, watts_per_core)


class SpendMeter:
    """`with SpendMeter() as meter: ...`, then `meter.stop()`: wall time, CPU seconds, peak resident memory and
    energy of the stretch inside. A thread samples the memory and reads the RAPL counters every `interval_s`
    (cheap next to any measurement: a file read twenty times a second)."""

    def __init__(self, powercap: Path = POWERCAP, interval_s: float = 0.05) -> None:
        self.powercap, self.interval_s = powercap, interval_s
        self._spend: Spend | None = None

    def __enter__(self) -> SpendMeter:
        self._meter = Meter(self.powercap)
        self._proc = os.path.exists("/proc/self/statm")
        self._peak = rss_bytes() if self._proc else 0
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._done.wait(self.interval_s):
            self._meter.tick()
            if self._proc:
                self._peak = max(self._peak, rss_bytes())

    def stop(self) -> Spend:
        """What was spent until now; the meter stops at the first call (and on leaving the `with`)."""
        if self._spend is None:
            self._done.set()
            self._sampler.join()
            spent = self._meter.spent()
            self._spend = Spend(wall_s=spent.wall_s, cpu_s=spent.cpu_s, energy_j=spent.energy_j,
                                peak_memory_bytes=max(self._peak, rss_bytes()) if self._proc else None)
        return self._spend

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()
