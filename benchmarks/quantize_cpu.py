"""Quantization on CPU: for the MNIST-5k LeNet-300-100 MLP and the small CNN, the FP32 torch baseline, the int8
tools a user would pick instead of tradeoff (ONNX Runtime's quantize_dynamic and quantize_static, OpenVINO with
NNCF's nncf.quantize, each with its defaults: benchmarks/small_peers.py) and tradeoff's best, in one process.

Trains the bundled models on MNIST-5k if needed and runs `tradeoff.optimize` on each (the post-training passes and
prune.structured; search on validation). Every model is then timed in 9 interleaved rounds (median p50 at batch 1
and 32, 2 threads) and scored on the test split alike. The reference of each peer target is the fastest peer whose
accuracy drop is within the task's constraint (0.5 point) at that batch size, or the fastest peer when none holds it
(the row's `reference_b1` / `reference_b32` says which). Writes benchmarks/results/quantize_cpu.json.

    python benchmarks/quantize_cpu.py [--quick]

--quick (QUICK_TRIALS per search instead of 16) took 5 min 58 s on the 2-core AMD EPYC dev VM (weights already trained,
nothing else running). Of that, building a model's three peers takes seconds, an 8-trial search of the MLP about
50 s (before prune.structured joined the menu), and timing a model's five rows up to a minute (9 rounds x 2 batch
sizes x at most 0.8 s each).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks.common import report_targets, target, write_results  # noqa: E402
from benchmarks.small_peers import SmallPeer, small_peers  # noqa: E402
from benchmarks.timing import (  # noqa: E402
    BATCHES,
    THREADS,
    Variant,
    handle_variant,
    mark_references,
    recipe_text,
    rows_for,
)
from examples.mnist import HERE, LeNet300, SmallCNN, train  # noqa: E402
from tradeoff.config import load_task  # noqa: E402
from tradeoff.evaluation import Evaluator  # noqa: E402
from tradeoff.metrics import get_metric  # noqa: E402
from tradeoff.optimize import optimize  # noqa: E402
from tradeoff.problem import problem  # noqa: E402

# the post-training passes, and structured pruning: the one retraining pass that leaves a dense int8 kernel less to do
# (seconds of fine-tuning here), which the search tries before the best quantizer it measured (RecipeSpace.extensions)
PASSES = ("export.onnx", "fuse.transformer", "prune.structured", "quantize.dynamic", "quantize.static", "quantize.nncf",
          "quantize.fp16", "quantize.bf16", "quantize.weight_only")
QUICK_TRIALS = 10  # the seeds (each quantizer at its defaults, the float graph), then the best seed extended
# timing rounds of the rows: these models run in microseconds, where one ONNX Runtime session measures in its fast or
# its slow batch-1 mode (NOTES trap 13), so the median needs many sessions; 3 rounds put the very graph of a peer at
# 0.76x it (the seventeenth session's first run)
ROUNDS, ROUND_BUDGET_S = 9, 0.5
MAX_DROP = 0.005  # the tasks' constraint: half a point of accuracy, for tradeoff's search and the peers' reference
# the models served one at a time and in batches of 32 alike: the latency at both weighs the same
SERVED = {f"latency@b{b}": 1.0 for b in BATCHES}
# label: (model class, input shape, weights, task file, objectives (priorities or weights), target prefix or None)
MODELS: dict[str, tuple[Any, ...]] = {
    "LeNet-300-100 (MLP)": (LeNet300, None, "lenet300.safetensors", "mnist_mlp.yaml", SERVED, "MLP"),
    "small CNN": (SmallCNN, (1, 28, 28), "smallcnn.safetensors", "mnist_cnn.yaml", SERVED, "CNN"),
    "small CNN, size first": (SmallCNN, (1, 28, 28), "smallcnn.safetensors", "mnist_cnn.yaml", ("size", "latency"),
                              None),
}


def peer_variant(peer: SmallPeer) -> Variant:
    return Variant(peer.name, peer.recipe, peer.runtime, peer.size_bytes, partial(peer.load, THREADS), peer=True)


def within_constraint(row: dict[str, Any]) -> bool:
    return bool(row["accuracy_drop_points"] <= 100 * MAX_DROP)


def run(quick: bool) -> dict[str, list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []
    targets = []
    for label, (factory, shape, weights, task_file, objectives, prefix) in MODELS.items():
        train(factory, shape, HERE / weights)
        task = load_task(HERE / task_file)
        task = task.model_copy(update={
            "name": f"bench-{task.name}", "preset": "balanced", "objectives": objectives,
            "constraints": task.constraints.model_copy(update={"max_metric_drop": MAX_DROP}),
            "runtime": task.runtime.model_copy(update={"threads": THREADS, "batch_sizes": BATCHES}),
            "search": task.search.model_copy(update={"trials": QUICK_TRIALS if quick else 16, "storage": "memory",
                                                     "passes": PASSES}),
        })
        with tempfile.TemporaryDirectory() as out:
            result = optimize(task, out=out, quiet=True)
        report = result.report.data
        given = problem(task)  # the model and data the search was given
        evaluator = Evaluator(given.model, given.data, get_metric("accuracy"), THREADS, BATCHES)
        model_rows = rows_for([
            handle_variant("torch FP32", given.model, "baseline"),
            *(peer_variant(peer) for peer in small_peers(given.model, given.data)),
            handle_variant("tradeoff best", result.best.model, recipe_text(result.best.recipe)),
        ], evaluator, {"accuracy": get_metric("accuracy")}, rounds=ROUNDS, budget_s=ROUND_BUDGET_S)
        torch_row, ours = model_rows[0], model_rows[-1]
        for row in model_rows:
            row.update({"model": label, "size_ratio": torch_row["size_bytes"] / row["size_bytes"],
                        "accuracy_drop_points": 100 * (torch_row["accuracy"] - row["accuracy"])})
        ours.update({"size_zstd_ratio": report.best.ratios.size_zstd_reduction,
                     "trials": sum(t.state in ("complete", "pruned", "failed") for t in report.trials)})
        references = mark_references(model_rows, within_constraint)
        rows += model_rows
        if prefix == "MLP":
            targets += [target("MLP size reduction", ours["size_ratio"], 2.5, ">="),
                        target("MLP speed-up at batch 1", ours["speedup_b1"], 1.5, ">="),
                        target("MLP accuracy drop (points)", ours["accuracy_drop_points"], 100 * MAX_DROP, "<=")]
        if prefix is not None:
            targets += [target(f"{prefix} best vs the reference peer (the fastest within {100 * MAX_DROP} point), "
                               f"batch {b}", references[b][f"p50_ms_b{b}"] / ours[f"p50_ms_b{b}"], 1.0, ">=")
                        for b in BATCHES]
    return {"rows": rows, "targets": targets}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials")
    result = run(parser.parse_args().quick)
    table = Table(title=f"MNIST-5k test split, {THREADS} threads: torch FP32, the peers' int8 defaults, tradeoff best")
    for column in ("model", "variant", "b1 ms", "x", "b32 ms", "x", "KB", "size x", "accuracy", "drop", "reference",
                   "recipe"):
        table.add_column(column)
    for r in result["rows"]:
        reference = " ".join(f"b{b}" for b in BATCHES if r.get(f"reference_b{b}"))
        table.add_row(str(r["model"]), str(r["variant"]), f"{r['p50_ms_b1']:.3f}", f"{r['speedup_b1']:.2f}",
                      f"{r['p50_ms_b32']:.3f}", f"{r['speedup_b32']:.2f}", f"{r['size_bytes'] / 1e3:.0f}",
                      f"{r['size_ratio']:.2f}", f"{r['accuracy']:.4f}", f"{r['accuracy_drop_points']:+.2f}", reference,
                      str(r["recipe"]))
    Console(width=200).print(table)
    report_targets(result["targets"])
    print(write_results("quantize_cpu", result["rows"], result["targets"]))


if __name__ == "__main__":
    main()
