"""Quantization on CPU: FP32 torch baseline against tradeoff's best artifact, measured in the same process.

Trains the bundled LeNet-300-100 and small CNN on MNIST-5k if needed, runs `tradeoff.optimize` on each
(search on validation, final figures on the test split), and prints speed-up, size ratio and accuracy drop.
Writes benchmarks/results/quantize_cpu.json.

    python benchmarks/quantize_cpu.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks.common import report_targets, target, write_results  # noqa: E402
from examples.mnist import HERE, LeNet300, SmallCNN, train  # noqa: E402
from tradeoff.config import load_task  # noqa: E402
from tradeoff.optimize import optimize  # noqa: E402

# post-training passes only (no retraining): each run takes minutes, not hours
PASSES = ("export.onnx", "fuse.transformer", "quantize.dynamic", "quantize.static", "quantize.nncf", "quantize.fp16",
          "quantize.bf16", "quantize.weight_only")
# label: (model class, input shape, weights, task file, objectives in priority order)
MODELS = {
    "LeNet-300-100 (MLP)": (LeNet300, None, "lenet300.safetensors", "mnist_mlp.yaml", ("latency", "size")),
    "small CNN": (SmallCNN, (1, 28, 28), "smallcnn.safetensors", "mnist_cnn.yaml", ("latency", "size")),
    "small CNN, size first": (SmallCNN, (1, 28, 28), "smallcnn.safetensors", "mnist_cnn.yaml", ("size", "latency")),
}


def run(quick: bool) -> dict[str, list[dict[str, object]]]:
    rows, targets = [], []
    for label, (factory, shape, weights, task_file, objectives) in MODELS.items():
        train(factory, shape, HERE / weights)
        task = load_task(HERE / task_file)
        task = task.model_copy(update={
            "name": f"bench-{task.name}", "preset": "balanced", "objectives": objectives,
            "constraints": task.constraints.model_copy(update={"max_metric_drop": 0.005}),
            "runtime": task.runtime.model_copy(update={"threads": 2, "batch_sizes": (1, 32)}),
            "search": task.search.model_copy(update={"trials": 8 if quick else 16, "storage": "memory",
                                                     "passes": PASSES}),
        })
        with tempfile.TemporaryDirectory() as out:
            report = optimize(task, out=out, quiet=True).report.data
        base, best = report.baseline, report.best
        row = {
            "model": label,
            "recipe": " -> ".join(s["pass"] for s in best.recipe["steps"]) or "baseline",
            "baseline_p50_ms_b1": base.latency_by_batch[1].p50, "best_p50_ms_b1": best.latency_by_batch[1].p50,
            "speedup_b1": base.latency_by_batch[1].p50 / best.latency_by_batch[1].p50,
            "speedup_b32": base.latency_by_batch[32].p50 / best.latency_by_batch[32].p50,
            "size_ratio": best.ratios.size_reduction, "size_zstd_ratio": best.ratios.size_zstd_reduction,
            "baseline_size_bytes": base.size_bytes, "best_size_bytes": best.size_bytes,
            "baseline_accuracy": base.metric, "best_accuracy": best.metric,
            "accuracy_drop_points": 100 * best.ratios.metric_drop,
            "trials": sum(t.state in ("complete", "pruned", "failed") for t in report.trials),
        }
        rows.append(row)
        if label.startswith("LeNet"):
            targets += [target("MLP size reduction", row["size_ratio"], 2.5, ">="),
                        target("MLP speed-up at batch 1", row["speedup_b1"], 1.5, ">="),
                        target("MLP accuracy drop (points)", row["accuracy_drop_points"], 0.5, "<=")]
    return {"rows": rows, "targets": targets}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials (about two minutes)")
    args = parser.parse_args()
    result = run(args.quick)
    table = Table(title="FP32 torch baseline vs tradeoff best, MNIST-5k test split, 2 threads")
    for column in ("model", "recipe", "speed-up b1", "speed-up b32", "size x", "zstd x", "acc base", "acc best",
                   "drop (pts)"):
        table.add_column(column)
    for r in result["rows"]:
        table.add_row(str(r["model"]), str(r["recipe"]), f"{r['speedup_b1']:.2f}", f"{r['speedup_b32']:.2f}",
                      f"{r['size_ratio']:.2f}", f"{r['size_zstd_ratio']:.2f}", f"{r['baseline_accuracy']:.4f}",
                      f"{r['best_accuracy']:.4f}", f"{r['accuracy_drop_points']:+.2f}")
    Console(width=160).print(table)
    report_targets(result["targets"])
    write_results("quantize_cpu", result["rows"], result["targets"])


if __name__ == "__main__":
    main()
