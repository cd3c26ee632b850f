"""How the benchmarks that time peers beside tradeoff measure them: every variant (the torch baseline, the peer tools'
models, tradeoff's best) in one process, in interleaved timing rounds at batch 1 and 32 on 2 threads (tradeoff's best
on fewer where its search measured them faster), and the targets' reference at each batch size: the fastest peer
that holds the task's quality constraint."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tradeoff.evaluation import Evaluator, predict
from tradeoff.measure import MIN_RUNS, artifact_size, measure_latency, threads_text
from tradeoff.metrics import Metric, get_metric
from tradeoff.model import ModelHandle
from tradeoff.passes import build_pass
from tradeoff.recipe import Recipe
from tradeoff.runtimes import InferenceFn, runtime_for

THREADS = 2
BATCHES = (1, 32)
ROUNDS = 3  # timing rounds, every variant once per round: slow drifts of a shared machine hit all alike
ROUND_BUDGET_S = 1.5  # seconds of timed calls per variant and batch size in each round
# what the embedding benchmarks report of each variant, beside its latency: mean and worst cosine to the original
EMBEDDING_FIDELITY: dict[str, Metric] = {"cosine_mean": get_metric("cosine"), "cosine_min": get_metric("cosine_min")}


@dataclass(frozen=True)
class Variant:
    """One timed row: a tradeoff model handle or a peer's model, loaded fresh for each timing round."""

    name: str
    recipe: str
    runtime: str
    size_bytes: int
    load: Callable[[], InferenceFn]
    peer: bool = False
    threads: int = THREADS  # a peer runs on its tool's default, every core; tradeoff's best on those it chose


def handle_variant(name: str, model: ModelHandle, recipe: str, peer: bool = False) -> Variant:
    runtime, threads = runtime_for(model), model.threads_within(THREADS)
    return Variant(name, recipe, runtime.name, artifact_size(model).bytes, lambda: runtime.load(model, threads), peer,
                   threads)


def recipe_text(recipe: Recipe) -> str:
    """A searched recipe in one line: its passes with the options the search set away from their defaults."""
    defaults = [build_pass({"pass": step["pass"]}).step() for step in recipe.steps]  # normalized as recipes are
    steps = " -> ".join(step["pass"] + "".join(f" {k}={v}" for k, v in step.items() if v != default.get(k))
                        for step, default in zip(recipe.steps, defaults, strict=True)) or "baseline"
    threads = f", {threads_text(recipe.threads)}" if recipe.threads else ""
    return f"{steps} (on {recipe.runtime or 'default runtime'}{threads})"


def rows_for(variants: list[Variant], evaluator: Evaluator, quality: Mapping[str, Metric],
             rounds: int = ROUNDS, budget_s: float = ROUND_BUDGET_S) -> list[dict[str, Any]]:
    """Each `quality` metric (row field: metric, on the test split) and the size once per variant; latency as the
    median p50 of `rounds` interleaved timing rounds (`budget_s` of timed calls per variant and batch size in each,
    the rounds sharing the least number of calls of one plain measurement), and the fastest round's (batch 1 is
    bimodal on these VMs, NOTES trap 13: the fastest round is the fast mode), and the speed-up over the first
    variant (the baseline)."""
    test = evaluator.data.test
    timings: dict[str, dict[int, list[float]]] = {v.name: {b: [] for b in BATCHES} for v in variants}
    for _ in range(rounds):
        for variant in variants:
            run = variant.load()
            for batch in BATCHES:
                timings[variant.name][batch].append(measure_latency(
                    run, test.x[:batch], variant.threads, budget_s=budget_s, min_runs=-(-MIN_RUNS // rounds)).p50_ms)
            del run  # one live session at a time: an idle ONNX Runtime session spins and slows the next one
    rows = []
    for variant in variants:
        outputs, reference = predict(variant.load(), test), evaluator.reference["test"]
        rows.append({"variant": variant.name, "recipe": variant.recipe, "runtime": variant.runtime,
                     "threads": variant.threads, "peer": variant.peer, "size_bytes": variant.size_bytes,
                     **{f"p50_ms_b{b}": float(np.median(timings[variant.name][b])) for b in BATCHES},
                     **{f"fastest_round_p50_ms_b{b}": min(timings[variant.name][b]) for b in BATCHES},
                     "p50_ms_rounds": timings[variant.name],
                     **{field: metric(outputs, test.y, reference) for field, metric in quality.items()}})
    baseline = rows[0]
    for row in rows:
        row.update({f"speedup_b{b}": baseline[f"p50_ms_b{b}"] / row[f"p50_ms_b{b}"] for b in BATCHES})
    return rows


def mark_references(rows: list[dict[str, Any]], holds: Callable[[dict[str, Any]], bool]) -> dict[int, dict[str, Any]]:
    """The targets' reference at each batch size: the fastest peer row that `holds` the task's quality
    constraint, or the fastest peer row when none does; that row's `reference_b<batch>` says which of the two."""
    peers = [r for r in rows if r["peer"]]
    faithful = [r for r in peers if holds(r)]
    references = {}
    for batch in BATCHES:
        reference = min(faithful or peers, key=lambda r: r[f"p50_ms_b{batch}"])
        reference[f"reference_b{batch}"] = ("the fastest peer within the constraint" if faithful
                                            else "the fastest peer: none holds the constraint")
        references[batch] = reference
    return references
