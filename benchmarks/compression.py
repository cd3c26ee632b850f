"""Compression on MNIST-5k: the classics by hand, then the optimize search on its own, in one process each.

1. Deep Compression on LeNet-300-100: gradual magnitude pruning -> 4-bit weight sharing -> sparse storage,
   compressed bytes against the FP32 baseline file (Han et al. 2016 report 40x on full MNIST).
2. Structured pruning of a residual CNN with batch norm: measured torch latency against the unpruned model.
3. The mobile case: pruning + static int8 on the small CNN, size against the original at > 95% accuracy.
4. For each case, `tradeoff.optimize` with that case's objective and constraint, within its default budget; where
   the objective is latency, the search's model and the hand recipe's are timed against each other in the same
   rounds, and the search's must also reach the hand recipe's targets (2x at <= 1 point, on test).
5. Quantization-aware training against post-training quantization, with the same int8 tail.

Figures are on the test split; searches decide on validation. Writes benchmarks/results/compression.json.

    python benchmarks/compression.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks.common import report_targets, target, write_results  # noqa: E402
from examples.mnist import HERE, LeNet300, ResidualCNN, SmallCNN, train  # noqa: E402
from tradeoff.config import DataSpec, ModelSpec, task_from_dict  # noqa: E402
from tradeoff.data import load_data  # noqa: E402
from tradeoff.evaluation import Evaluator, Measurement  # noqa: E402
from tradeoff.metrics import get_metric  # noqa: E402
from tradeoff.model import ModelHandle, load_model  # noqa: E402
from tradeoff.optimize import optimize  # noqa: E402
from tradeoff.passes import Context  # noqa: E402
from tradeoff.recipe import Recipe  # noqa: E402

CASES: dict[str, dict[str, Any]] = {
    "deep compression": {
        "model": (LeNet300, None, "lenet300.safetensors"),
        "recipe": [{"pass": "prune.magnitude", "sparsity": 0.95, "schedule": "gradual", "steps": 4,
                    "finetune_epochs": 5}, {"pass": "cluster.weights", "bits": 4}],
        "objective": "size", "max_drop": 0.005, "runtime": "torch", "batch": 1,
    },
    "structured pruning": {
        "model": (ResidualCNN, (1, 28, 28), "residualcnn.safetensors"),
        "recipe": [{"pass": "prune.structured", "amount": 0.5, "criterion": "l2", "finetune_epochs": 4}],
        "objective": "latency", "max_drop": 0.01, "runtime": "torch", "batch": 32,
    },
    "mobile": {
        "model": (SmallCNN, (1, 28, 28), "smallcnn.safetensors"),
        "recipe": [{"pass": "prune.magnitude", "sparsity": 0.7, "finetune_epochs": 3}, {"pass": "export.onnx"},
                   {"pass": "quantize.static", "calibration": "entropy"}],
        "objective": "size", "max_drop": 0.01, "runtime": "auto", "batch": 1,
    },
}


def _row(case: str, how: str, recipe: Recipe, base: Measurement, best: Measurement, seconds: float | None) -> dict:
    return {
        "case": case, "how": how, "recipe": " -> ".join(recipe.passes) or "baseline",
        "baseline_accuracy": base.metric, "accuracy": best.metric, "drop_points": 100 * (base.metric - best.metric),
        "size_bytes": best.size.bytes, "size_ratio": base.size.bytes / best.size.bytes,
        "zstd_ratio_vs_fp32_file": base.size.bytes / best.size.zstd_bytes,
        "size_fraction": best.size.bytes / base.size.bytes,
        "latency_ms": best.primary_latency.p50_ms, "speedup": base.primary_latency.p50_ms / best.primary_latency.p50_ms,
        "batch": best.primary_latency.batch_size, "runtime": best.runtime, "search_seconds": seconds,
    }


def by_hand(case: str, spec: dict[str, Any]) -> tuple[dict[str, Any], ModelHandle, Evaluator]:
    """The row of the case's recipe applied by hand, the model it built and the evaluator that measured it."""
    factory, shape, weights = spec["model"]
    train(factory, shape, HERE / weights)
    data = load_data(DataSpec(source="builtin", name="mnist5k", shape=shape, seed=0))
    model = load_model(ModelSpec(source="torch", factory=f"examples.mnist:{factory.__name__}", weights=HERE / weights))
    evaluator = Evaluator(model, data, get_metric("accuracy"), 2, (spec["batch"],))
    recipe = Recipe(steps=tuple(spec["recipe"]))
    built = recipe.apply(model, Context(data=data, seed=0, threads=2))
    row = _row(case, "by hand", recipe, evaluator.measure(model, "test"), evaluator.measure(built, "test"), None)
    return row, built, evaluator


def qat_against_ptq() -> list[dict[str, Any]]:
    """The same int8 tail (export, static per-tensor or per-channel), with and without QAT before it."""
    rows = []
    for factory, shape, weights in ((LeNet300, None, "lenet300.safetensors"),
                                    (SmallCNN, (1, 28, 28), "smallcnn.safetensors")):
        data = load_data(DataSpec(source="builtin", name="mnist5k", shape=shape, seed=0))
        model = load_model(ModelSpec(source="torch", factory=f"examples.mnist:{factory.__name__}",
                                     weights=HERE / weights))
        evaluator = Evaluator(model, data, get_metric("accuracy"), 2, (1,))
        base = evaluator.measure(model, "test")
        ctx = Context(data=data, seed=0, threads=2)
        for per_channel in (False, True):
            tail = ({"pass": "export.onnx"}, {"pass": "quantize.static", "per_channel": per_channel})
            for head in ((), ({"pass": "quantize.qat"},)):
                recipe = Recipe(steps=(*head, *tail))
                how = f"{'QAT' if head else 'PTQ'}, {'per-channel' if per_channel else 'per-tensor'}"
                rows.append(_row(f"qat vs ptq, {factory.__name__}", how, recipe, base,
                                 evaluator.measure(recipe.apply(model, ctx), "test"), None))
    return rows


def by_search(case: str, spec: dict[str, Any], trials: int) -> tuple[dict[str, Any], ModelHandle]:
    import time

    factory, shape, weights = spec["model"]
    task = task_from_dict({
        "name": f"bench-{case.replace(' ', '-')}", "preset": "mobile" if spec["objective"] == "size" else "realtime",
        "model": {"source": "torch", "factory": f"examples.mnist:{factory.__name__}", "weights": str(HERE / weights)},
        "data": {"source": "builtin", "name": "mnist5k", "shape": list(shape) if shape else None, "seed": 0},
        "objectives": [spec["objective"]], "constraints": {"max_metric_drop": spec["max_drop"]},
        "runtime": {"target": spec["runtime"], "threads": 2, "batch_sizes": [spec["batch"]]},
        "search": {"trials": trials, "storage": "memory", "seed": 0},
    })
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as out:
        result = optimize(task, out=out, quiet=True)
    seconds = time.monotonic() - started
    return _row(case, "search", result.best.recipe, result.baseline, result.best.measured, seconds), result.best.model


def run(quick: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows, targets = [], []
    for case, spec in CASES.items():
        hand, hand_model, evaluator = by_hand(case, spec)
        search, search_model = by_search(case, spec, trials=10 if quick else 20)
        rows += [hand, search]
        if spec["objective"] == "latency":  # the two models timed in the same rounds: each row's ms has its moment
            hand_timed, search_timed = evaluator.interleaved_latency([hand_model, search_model], "test")
            ratio = search_timed[spec["batch"]].p50_ms / hand_timed[spec["batch"]].p50_ms
            search["latency_vs_hand_same_rounds"] = ratio
        else:
            ratio = search["size_bytes"] / hand["size_bytes"]
        targets.append(target(f"{case}: search's {spec['objective']} / hand's", ratio, 1.0, "<="))
    dc, dc_search, sp, sp_search, mobile = rows[:5]
    rows += qat_against_ptq()
    targets += [target("deep compression: zstd bytes vs FP32 file", dc["zstd_ratio_vs_fp32_file"], 50, ">="),
                target("deep compression: accuracy drop (points)", dc["drop_points"], 0.5, "<="),
                target("deep compression by search: zstd bytes vs FP32 file", dc_search["zstd_ratio_vs_fp32_file"], 50,
                       ">="),
                target("deep compression by search: accuracy drop (points)", dc_search["drop_points"], 0.5, "<="),
                target("structured pruning: speed-up at batch 32", sp["speedup"], 2.0, ">="),
                target("structured pruning: accuracy drop (points)", sp["drop_points"], 1.0, "<="),
                target("structured pruning by search: speed-up at batch 32", sp_search["speedup"], 2.0, ">="),
                target("structured pruning by search: accuracy drop (points)", sp_search["drop_points"], 1.0, "<="),
                target("mobile: size fraction of original", mobile["size_fraction"], 0.5, "<="),
                target("mobile: accuracy", mobile["accuracy"], 0.95, ">=")]
    return rows, targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 search trials per case instead of 20")
    rows, targets = run(parser.parse_args().quick)
    table = Table(title="Compression on MNIST-5k, test split, 2 threads")
    columns = ("case", "how", "recipe", "acc", "drop pts", "size x", "zstd x vs fp32", "speed-up", "batch")
    for column in columns:
        table.add_column(column)
    for r in rows:
        table.add_row(r["case"], r["how"], r["recipe"], f"{r['accuracy']:.4f}", f"{r['drop_points']:+.2f}",
                      f"{r['size_ratio']:.1f}", f"{r['zstd_ratio_vs_fp32_file']:.1f}", f"{r['speedup']:.2f}",
                      str(r["batch"]))
    Console(width=180).print(table)
    report_targets(targets)
    write_results("compression", rows, targets)


if __name__ == "__main__":
    main()
