"""The schema of report.json: what scripts may read from a run, and what the HTML report renders."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tradeoff.measure import threads_text


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LatencyMs(_Frozen):
    p50: float
    p95: float
    batch_size: int
    threads: int
    runs: int
    input_shape: list[int] = []  # what was timed: (batch, tokens) for text, so the figure can be reproduced

    def setting(self) -> str:
        """What was timed, in words: 'batch 1, input 1x128' (the threads are the model's own: `Measured.running`)."""
        shape = f", input {'x'.join(map(str, self.input_shape))}" if self.input_shape else ""
        return f"batch {self.batch_size}{shape}"


Split = Literal["val", "test"]
Format = Literal["torch", "onnx"]


class Energy(_Frozen):
    """Joules, and how they were found: "measured" by RAPL, or "estimated" (`method` says how); never one for the
    other."""

    joules: float
    source: Literal["measured", "estimated"]
    method: str


class PredictionCost(_Frozen):
    """One prediction at one batch size (insight/cost.py): b / p50 predictions per ms on the task's threads, the
    task's price per hour over them (None without `cost.usd_per_hour`), the energy of the timed calls over the
    predictions they made."""

    predictions_per_s: float
    usd_per_million: float | None = None
    energy_per_prediction: Energy | None = None


class Measured(_Frozen):
    """One model measured on one split, on one runtime."""

    metric: float
    split: Split
    runtime: str
    format: Format
    latency_ms: LatencyMs
    latency_by_batch: dict[int, LatencyMs] = Field(default_factory=dict)
    size_bytes: int
    size_zstd_bytes: int
    params: int
    nonzero_params: int
    macs: int | None = None
    peak_memory_bytes: int | None = None
    cost_by_batch: dict[int, PredictionCost] = Field(default_factory=dict)

    @property
    def running(self) -> str:
        """Where it ran, in words: 'onnxruntime, 1 thread'."""
        return f"{self.runtime}, {threads_text(self.latency_ms.threads)}"


class Ratios(_Frozen):
    """Candidate against the baseline measured in the same process: >1 means better."""

    speedup: float
    size_reduction: float
    size_zstd_reduction: float
    metric_drop: float


class LayerStat(_Frozen):
    """One weight matrix of an artifact: its stored bit-width and the fraction of its stored values that are 0."""

    name: str
    shape: list[int]
    bits: int
    sparsity: float


class Violation(_Frozen):
    constraint: Literal["max_metric_drop", "max_latency_ms", "max_latency_ratio", "max_size_bytes", "max_params",
                        "max_cost_per_million"]
    limit: float
    value: float
    missed_by: float


class Best(Measured):
    """The model that shipped, chosen on validation and then measured once on test."""

    layers: list[LayerStat] = Field(default_factory=list)
    recipe: dict[str, Any]
    artifact: str | None
    trial: int | None
    is_baseline: bool
    ratios: Ratios
    test_violations: list[Violation] = Field(default_factory=list)  # reported, never a reason to choose again


class Spend(_Frozen):
    """What a stretch of the optimization cost the machine that ran it: this process's wall time, CPU seconds
    (every thread, and child processes), largest resident memory seen, and energy."""

    wall_s: float
    cpu_s: float
    peak_memory_bytes: int | None
    energy: Energy


class RunSpend(_Frozen):
    """What optimizing cost: measuring the baseline, and the whole run (loading to report); each trial's is with the
    trial, as the worker that ran it measured it."""

    baseline: Spend
    run: Spend


TrialState = Literal["complete", "pruned", "failed"]


class Trial(_Frozen):
    """A trial that spent budget, measured on the validation split (latency absent when pruned before timing)."""

    number: int
    recipe: dict[str, Any]
    passes: list[str]
    state: TrialState
    note: str | None = None
    metric: float | None = None
    metric_drop: float | None = None
    latency_ms: LatencyMs | None = None
    # p50 at the first batch size over the baseline's, both timed in the same rounds by the worker that ran the
    # trial (what its sampler was told): the figure that compares across workers on different machines, where ms
    # do not
    latency_ratio: float | None = None
    size_bytes: int | None = None
    size_zstd_bytes: int | None = None
    params: int | None = None
    nonzero_params: int | None = None
    macs: int | None = None
    # p50 ms of each runtime where auto chose, at the batch size the objectives read (geometric mean where several)
    runtimes: dict[str, float] = Field(default_factory=dict)
    worker: str | None = None  # host:pid of the process that measured it
    feasible: bool = False
    violations: list[Violation] = Field(default_factory=list)
    cost_usd_per_million: float | None = None  # at the first batch size, where the task gives a price
    spend: Spend | None = None  # what building and measuring it cost its worker's machine


class SearchStats(_Frozen):
    """What the search's samples came to. Only measured and failed trials spent budget and are listed in `trials`;
    the others stay in the study (the sampler learns from them) and are counted here."""

    measured: int  # complete, or pruned before timing
    failed: int
    skipped: int  # spelled no candidate, the baseline, or one needing a step that had failed; found the budget spent
    duplicates: int  # repeated a candidate measured before
    interrupted: int  # cut off by a killed worker and queued again

    def describe(self) -> str:
        """In words: '10 measured, 1 failed; not listed, at no cost: 40 skipped, 3 repeated a measured candidate'."""
        unlisted = [f"{n} {what}" for n, what in ((self.skipped, "skipped"), (self.duplicates, "repeated a measured "
                    "candidate"), (self.interrupted, "cut off by a stopped worker and measured again")) if n]
        listed = f"{self.measured} measured, {self.failed} failed"
        return f"{listed}; not listed, at no cost: {', '.join(unlisted)}" if unlisted else listed


class Finalist(_Frozen):
    """A Pareto-front trial rebuilt and measured again on validation, timed in rounds beside the baseline."""

    trial: int
    recipe: dict[str, Any]
    measured: Measured
    ratios: Ratios  # against the baseline on validation, timed in the same rounds
    meets_constraints: bool
    violations: list[Violation] = Field(default_factory=list)
    excluded: str | None = None  # why it did not ship; None for the one that did


class Choice(_Frozen):
    """How the shipped model was chosen among the finalists (on validation), so a reader can predict it."""

    rule: str
    excluded: dict[int, str] = Field(default_factory=dict)


class Binding(_Frozen):
    """Why no candidate shipped: the constraint that bound and the nearest miss."""

    constraint: str
    limit: float
    nearest_trial: int | None
    nearest_value: float | None
    missed_by: float | None


class Report(_Frozen):
    schema_version: Literal[2] = 2  # 2: finalists and the choice on validation, the test split read once
    name: str
    metric: dict[str, Any]  # {"name": ..., "higher_is_better": ...}
    objectives: list[str] | dict[str, float]  # a list is a priority order, a mapping weights
    constraints: dict[str, float | None]
    baseline: Measured
    baseline_val: Measured  # what the trials were compared against; timed in rounds beside the finalists
    best: Best
    finalists: list[Finalist]
    trials: list[Trial]
    search_stats: SearchStats
    pareto: list[int]
    choice: Choice
    binding: Binding | None = None
    warnings: list[str] = Field(default_factory=list)
    env: dict[str, Any]
    task: dict[str, Any]
    sensitivity: dict[str, Any] | None = None  # per layer (insight.sensitivity), where the task asked for it
    spend: RunSpend | None = None  # what the optimization cost; absent from reports written before it was kept
