"""The one place a model is measured: metric on a split, latency on its runtime, size and compute.

Passes never evaluate themselves; the baseline and every candidate go through the same Evaluator.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from tradeoff.config import TIMING_S, CostSpec
from tradeoff.data import DataBundle, Split
from tradeoff.errors import ConfigError, DataError, ModelError, RuntimeBackendError
from tradeoff.insight.cost import cost_values
from tradeoff.measure import (
    MIN_RUNS,
    WARMUP_S,
    Latency,
    Size,
    artifact_size,
    count_macs,
    count_parameters,
    measure_latency,
    paired_latency,
    peak_memory,
    threads_text,
)
from tradeoff.metrics import Metric
from tradeoff.model import ModelHandle
from tradeoff.runtimes import InferenceFn, runtime_for, runtimes_for

EVAL_BATCH = 256
INTERLEAVED_ROUNDS = 10  # rounds of models compared by interleaved timing
ROUND_WARMUP_S = 0.05  # a model's warm-up in each round after its first
# fewer threads than the task's are kept only where they run a model this much faster: within timing noise the
# task's own count stays, so a near tie does not flip between runs
FEWER_THREADS_GAIN = 0.05
# with_fastest_runtime's rounds: each setting loads again in each (a compile of MiniLM on OpenVINO: 0.7 s), so few
SETTING_ROUNDS = 3
SETTING_SHARE = 1 / 3  # of the timing budget, per runtime setting, over its rounds and batch sizes
SETTING_RUNS = 2  # calls per round at the least


@dataclass(frozen=True)
class Measurement:
    metric: float
    split: str
    runtime: str
    format: str
    size: Size
    params: int
    nonzero_params: int
    macs: int | None
    latency: dict[int, Latency] = field(default_factory=dict)
    peak_memory_bytes: int | None = None
    cost: CostSpec = field(default_factory=CostSpec)  # the task's price and watts, which its cost figures follow

    @property
    def primary_latency(self) -> Latency | None:
        return next(iter(self.latency.values()), None)

    def values(self, metric_drop: float | None = None,
               baseline: Measurement | None = None) -> dict[str, float | None]:
        """Every measured value by name, units in the name: what objectives and constraints look up; with
        `metric_drop` (against a baseline on the same split) too. With a `baseline` timed by the same process, its
        p50 (`baseline_latency_ms.p50@b<n>`) and this model's p50 over it (`latency_ratio.p50@b<n>`) at each batch
        size both were timed at: a ratio reads the same on a fast machine and a slow one. Where the task gives a
        price, the cost per million predictions at each batch size too (insight/cost.py)."""
        values: dict[str, float | None] = {
            "metric": self.metric, "size_bytes": self.size.bytes, "size_zstd_bytes": self.size.zstd_bytes,
            "params": self.params, "nonzero_params": self.nonzero_params, "macs": self.macs,
            "peak_memory_bytes": self.peak_memory_bytes}
        if metric_drop is not None:
            values["metric_drop"] = metric_drop
        base = baseline.latency if baseline is not None else None
        return {**values, **latency_values(self.latency, base),
                **cost_values(self.latency, self.cost.usd_per_hour, base)}


def latency_values(latency: Mapping[int, Latency],
                   baseline: Mapping[int, Latency] | None = None) -> dict[str, float | None]:
    """Latencies by name at each batch size (`latency_ms.p50@b<n>`, `.p95`), and, against a `baseline` timed by the
    same process, its p50 and the ratio to it at each batch size both were timed at."""
    values: dict[str, float | None] = {}
    for batch, timed in latency.items():
        values[f"latency_ms.p50@b{batch}"] = timed.p50_ms
        values[f"latency_ms.p95@b{batch}"] = timed.p95_ms
        if baseline is not None and (base := baseline.get(batch)) is not None:
            values[f"baseline_latency_ms.p50@b{batch}"] = base.p50_ms
            values[f"latency_ratio.p50@b{batch}"] = timed.p50_ms / base.p50_ms
    return values


def predict(run: InferenceFn, split: Split) -> np.ndarray:
    """`run`'s outputs on a whole split, in batches."""
    return np.concatenate([run(x) for x, _ in split.batches(EVAL_BATCH)])


def _halvings(threads: int) -> list[int]:
    """`threads`, then half as many, down to one: the thread counts a runtime is timed on."""
    return [threads >> shift for shift in range(threads.bit_length())]


def _setting(runtime: str, threads: int, most: int) -> str:
    """A runtime setting as the report names it: the runtime alone on the task's threads."""
    return runtime if threads == most else f"{runtime} on {threads_text(threads)}"


def _paired(timed: dict[int, list[dict[int, Latency]]]) -> dict[int, dict[int, Latency]]:
    """Each model's rounds as one figure per batch size, the first model's rounds as the clock."""
    clock = next(iter(timed.values()), [])
    return {index: {b: paired_latency([t[b] for t in times], [t[b] for t in clock]) for b in times[0]}
            for index, times in timed.items()}


def _timing_batch(split: Split, batch_size: int) -> np.ndarray:
    repeats = -(-batch_size // len(split))
    return np.concatenate([split.x] * repeats)[:batch_size]


class Evaluator:
    """Holds the data, metric and the baseline's outputs that fidelity metrics compare against."""

    def __init__(self, baseline: ModelHandle, data: DataBundle, metric: Metric, threads: int,
                 batch_sizes: tuple[int, ...], target: str = "auto", cost: CostSpec | None = None,
                 runtime_batches: tuple[int, ...] | None = None, timing_s: float = TIMING_S) -> None:
        self.data, self.metric, self.threads, self.batch_sizes, self.target = data, metric, threads, batch_sizes, target
        self.timing_s = timing_s  # seconds of timed calls per model and batch size
        self.baseline = baseline
        self.runtime_batches = runtime_batches or batch_sizes[:1]  # where with_fastest_runtime times each runtime
        self.cost = cost or CostSpec()
        if metric.needs_labels and not data.labelled:
            raise ConfigError(f"metric '{metric.name}' needs labels but the data has none",
                              "use a fidelity metric (cosine, cosine_min, spearman, recall@10) or add a label column")
        run = runtime_for(baseline).load(baseline, baseline.threads_within(threads))
        try:
            run(data.val.x[:2])
        except Exception as exc:  # torch and ORT raise many types for a shape mismatch
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"data with per-sample shape {list(data.sample_shape)} does not fit the model: {first}",
                            "set data.shape to the input shape the model expects (without the batch axis)") from None
        self.reference = {name: self._finite(predict(run, split), name) for name, split in self._splits().items()}

    def _splits(self) -> dict[str, Split]:
        return {"val": self.data.val, "test": self.data.test}

    @staticmethod
    def _finite(outputs: np.ndarray, split: str) -> np.ndarray:
        if not np.all(np.isfinite(outputs)):
            raise ModelError(f"model outputs contain NaN or Inf on the {split} split",
                             "check the weights and that inputs are scaled as in training")
        return outputs

    def outputs(self, model: ModelHandle, split: str) -> np.ndarray:
        return self._outputs_on(model, self._splits()[split], split)

    def _outputs_on(self, model: ModelHandle, split: Split, name: str) -> np.ndarray:
        return self._finite(predict(runtime_for(model).load(model, model.threads_within(self.threads)), split), name)

    def score(self, model: ModelHandle, split: str) -> float:
        return self.metric(self.outputs(model, split), self._splits()[split].y, self.reference[split])

    def score_on(self, model: ModelHandle, split: Split) -> float:
        """The metric on a split the evaluator does not hold (a cross-validation fold), against the baseline's
        outputs on that split."""
        return self.metric(self._outputs_on(model, split, "held-out"), split.y,
                           self._outputs_on(self.baseline, split, "held-out"))

    def latency(self, model: ModelHandle, split: str, budget_s: float | None = None, warmup_s: float = WARMUP_S,
                min_runs: int = MIN_RUNS, batch_sizes: tuple[int, ...] | None = None) -> dict[int, Latency]:
        """Latency at each of the task's batch sizes (or `batch_sizes`), on real inputs from `split`, timed for
        `budget_s` (the evaluator's timing_s) each."""
        threads = model.threads_within(self.threads)
        run = runtime_for(model).load(model, threads)
        data = self._splits()[split]
        budget = self.timing_s if budget_s is None else budget_s
        return {b: measure_latency(run, _timing_batch(data, b), threads, warmup_s, budget, min_runs)
                for b in batch_sizes or self.batch_sizes}

    def interleaved_latency(self, models: list[ModelHandle], split: str, rounds: int = INTERLEAVED_ROUNDS,
                            settled: Callable[[int, list[dict[int, Latency]]], bool] | None = None,
                            runs_per_round: int | None = None, budget_s: float | None = None,
                            ) -> list[dict[int, Latency]]:
        """Latency of models that will be compared, timed in rounds that take each model in turn.

        A shared machine drifts by 10-20% between seconds (and ONNX Runtime switches between a fast and a slow
        mode at batch 1), so models timed one after another compare the moments as much as the models. The first
        model is the clock: each other model's figure is its median ratio to the first in the same round, times
        the first's median, so a round that was slow for all counts for none. The rounds share the time budget
        (`budget_s` per model and batch size, the evaluator's timing_s by default) and the least number of calls
        of one plain measurement (or take `runs_per_round` calls at the least), and only the first warms a model
        up in full: short rounds follow the drift closely, and many of them leave little to one unlucky round (a
        small CNN against another at batch 1, beside a busy core: 0.96-1.20x in 3 rounds, 1.09-1.14x in 10).
        `settled(rounds so far, figures so far)` may end the timing after any round: a question the first rounds
        already answer (is this model far over a ceiling?) needs no more of them.
        """
        timed = _paired(self._rounds(models, split, rounds, self.batch_sizes,
                                     self.timing_s if budget_s is None else budget_s,
                                     runs_per_round or max(2, -(-MIN_RUNS // rounds)), settled))
        return [timed[i] for i in range(len(models))]

    def _rounds(self, models: list[ModelHandle], split: str, rounds: int, batch_sizes: tuple[int, ...],
                budget_s: float, runs_per_round: int,
                settled: Callable[[int, list[dict[int, Latency]]], bool] | None = None,
                unloadable_skipped: bool = False) -> dict[int, list[dict[int, Latency]]]:
        """Each model's latency in each of the interleaved rounds, by its index in `models`; with
        `unloadable_skipped`, a model its runtime cannot load is left out instead of raising."""
        timed: dict[int, list[dict[int, Latency]]] = {i: [] for i in range(len(models))}
        for round_ in range(rounds):
            for index in list(timed):
                try:
                    timed[index].append(self.latency(models[index], split, budget_s=budget_s / rounds,
                                                     warmup_s=WARMUP_S if round_ == 0 else ROUND_WARMUP_S,
                                                     min_runs=runs_per_round, batch_sizes=batch_sizes))
                except RuntimeBackendError:
                    if not unloadable_skipped or round_ > 0:
                        raise
                    del timed[index]
            if settled is not None and round_ + 1 < rounds and settled(round_ + 1, list(_paired(timed).values())):
                break
        return timed

    def with_fastest_runtime(self, model: ModelHandle, split: str) -> tuple[ModelHandle, dict[str, float]]:
        """`model` pinned to the runtime and thread count that run it fastest at `runtime_batches` (the geometric
        mean of its fastest round's p50 over them, where several), and each setting's p50 ms (that mean) by name.

        Only a target of auto chooses the runtime, and only among installed runtimes that can load the model
        (OpenVINO does not run ONNX Runtime's quantized attention); a named target pins that runtime where it runs
        the format. The threads are chosen on any target: the task's `runtime.threads` is the most a model may use,
        and each runtime is timed on half as many again and again, fewer kept where clearly faster than more (one
        ONNX Runtime thread runs LeNet-300-100 int8 1.6x faster at batch 32 than two: docs/NOTES.md). The settings
        are timed in interleaved rounds, each by its fastest round: timed one at a time, a setting in a slow spell
        of the machine lost to one timed after it, and a busy neighbour core slows two threads more than one, so
        the search shipped slower settings (benchmarks/RESULTS.md, the sixteenth and seventeenth sessions'
        quantize_cpu); the fastest round is the one nearest a quiet machine.
        """
        if self.target == "auto":
            names = runtimes_for(model.format, auto_only=True)
        else:
            model = model.with_runtime(self.target) if self.target in runtimes_for(model.format) else model
            names = [runtime_for(model).name]
        if len(names) < 2 and self.threads == 1:
            return model, {}
        settings = [(name, threads) for name in names for threads in _halvings(self.threads)]
        timed = self._rounds([model.with_runtime(name, threads) for name, threads in settings], split,
                             SETTING_ROUNDS, self.runtime_batches, self.timing_s * SETTING_SHARE, SETTING_RUNS,
                             unloadable_skipped=True)
        table = {settings[i]: statistics.geometric_mean(min(r[b].p50_ms for r in rounds) for b in rounds[0])
                 for i, rounds in timed.items()}
        if not table:
            return model, {}
        kept: dict[str, int] = {}  # each runtime's threads: fewer only where they ran clearly faster
        for name, threads in table:
            if name not in kept or table[name, threads] <= (1 - FEWER_THREADS_GAIN) * table[name, kept[name]]:
                kept[name] = threads
        name = min(kept, key=lambda n: table[n, kept[n]])
        chosen = model.with_runtime(model.runtime if len(names) < 2 else name,
                                    kept[name] if kept[name] < self.threads else None)
        return chosen, {_setting(n, t, self.threads): ms for (n, t), ms in table.items()}

    def measure(self, model: ModelHandle, split: str, timing: bool = True) -> Measurement:
        runtime = runtime_for(model)
        data = self._splits()[split]
        with peak_memory() as peak:
            run = runtime.load(model, model.threads_within(self.threads))
            run(_timing_batch(data, max(self.batch_sizes)))
        outputs = self._finite(predict(run, data), split)
        del run  # one live session at a time: an idle ONNX Runtime session spins and slows the next one
        latency = self.latency(model, split) if timing else {}
        params, nonzero = count_parameters(model)
        return Measurement(
            metric=self.metric(outputs, data.y, self.reference[split]), split=split, runtime=runtime.name,
            format=model.format, size=artifact_size(model), params=params, nonzero_params=nonzero,
            macs=count_macs(model, self.data.val.x[:1]), latency=latency, peak_memory_bytes=peak[0], cost=self.cost,
        )
