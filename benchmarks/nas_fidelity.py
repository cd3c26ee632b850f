"""Does the NAS benchmark's search protocol rank architectures as the paper's long protocol does?

A search trains each candidate briefly and keeps the best on validation; that is worth something only where the
brief training ranks architectures as their long training (the one the result will get) does. This script trains
eight MNIST-1D CNNs (the picks of the first five searches of benchmarks/nas.py, the paper's CNN, and two variants
of the one pick that beat it) on the training split by three protocols, and scores each on validation:

- `earlier`: the search protocol benchmarks/nas.py used first: Adam at 1e-2, batch 100, cosine over 30 epochs,
  early stopping after 5 epochs without gain (best weights restored);
- `search`: the protocol it uses now (nas.SEARCH_TRAIN): the paper's settings cut to 60 epochs;
- `paper`: the paper's 6,000 steps (171 epochs on the 3,500 training samples), whose validation curve also says
  how a pruner judging at epoch k would rank them.

The figure is Spearman's rank correlation of each protocol's validation accuracy (mean over the seeds) with the
paper protocol's. Validation only: nothing here reads the test split.

    python benchmarks/nas_fidelity.py [--quick]   # --quick: one training seed instead of two (about 6 minutes)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from rich.progress import track  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from benchmarks.common import report_targets, target, write_results  # noqa: E402
from benchmarks.nas import REFERENCE, SEARCH_TRAIN, _paper_train, trained_accuracy  # noqa: E402
from tradeoff.data import mnist1d  # noqa: E402
from tradeoff.metrics import get_metric  # noqa: E402
from tradeoff.nas.space import Architecture  # noqa: E402

EARLIER_SEARCH_TRAIN = {"epochs": 30, "batch_size": 100, "lr": 0.01, "schedule": "cosine",
                        "early_stopping": {"monitor": "metric", "patience": 5, "split": "val"}}
CURVE_EPOCHS = (5, 10, 20, 30, 45, 60, 90, 120)  # where the paper protocol's curve is read, as a pruner would


def _cnn(channels: list[int], kernel: list[int], stride: list[int], residual: bool, head: str) -> dict[str, Any]:
    return {"factory": "tradeoff.architectures:CNN",
            "options": {"classes": 10, "input_shape": [1, 40], "channels": channels, "kernel": kernel,
                        "stride": stride, "activation": "relu", "norm": "none", "residual": residual,
                        "pool": False, "head": head, "dropout": 0.0}}


ARCHITECTURES = {
    "evolution seed 0 pick (gap, residual)": _cnn([24, 24], [5, 7], [1, 1], True, "gap"),
    "tpe seed 0 pick": _cnn([24, 8], [5, 5], [1, 1], False, "flatten"),
    "evolution seed 1 pick": _cnn([32, 12], [5, 3], [2, 1], False, "flatten"),
    "tpe seed 1 pick": _cnn([24, 8], [3, 7], [1, 1], False, "flatten"),
    "evolution seed 2 pick": _cnn([16, 16], [5, 7], [1, 2], False, "flatten"),
    "gap, no residual": _cnn([24, 24], [5, 7], [1, 1], False, "gap"),
    "flatten, residual": _cnn([24, 8], [5, 7], [1, 1], True, "flatten"),
    "paper's CNN": {"factory": REFERENCE, "options": {}},
}


def _trained(architecture: dict[str, Any], options: dict[str, Any], seed: int) -> tuple[float, list[float]]:
    """Validation accuracy after training on train by `options`, and the validation curve per epoch."""
    data = mnist1d()
    accuracy, result = trained_accuracy(Architecture(**architecture), options, seed, data.train, data.val,
                                        get_metric("accuracy"))
    return accuracy, [float(r.monitor_metric) for r in result.history]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one training seed instead of two")
    seeds = (0,) if parser.parse_args().quick else (0, 1)
    torch.set_num_threads(1)
    protocols = {"earlier": EARLIER_SEARCH_TRAIN, "search": SEARCH_TRAIN, "paper": _paper_train(len(mnist1d().train))}
    runs = [(name, protocol, seed) for name in ARCHITECTURES for protocol in protocols for seed in seeds]
    trained = {run: _trained(ARCHITECTURES[run[0]], protocols[run[1]], run[2])
               for run in track(runs, description="training")}
    rows = []
    for name in ARCHITECTURES:
        curve = np.mean([trained[name, "paper", seed][1] for seed in seeds], axis=0)
        rows.append({"architecture": name, **{protocol: float(np.mean([trained[name, protocol, s][0] for s in seeds]))
                                              for protocol in protocols},
                     "by_seed": {protocol: [trained[name, protocol, s][0] for s in seeds] for protocol in protocols},
                     # a pruner's view at epoch k: the paper protocol's curve smoothed over the 5 epochs to k
                     "paper_curve": {k: float(np.mean(curve[k - 5:k])) for k in CURVE_EPOCHS}})
    final = [r["paper"] for r in rows]

    def rank_agreement(values: list[float]) -> float:
        return float(spearmanr(values, final).statistic)

    targets = [target("search protocol: Spearman of validation accuracy with the paper protocol's",
                      rank_agreement([r["search"] for r in rows]), 0.8, ">=")]
    agreement = {"earlier": rank_agreement([r["earlier"] for r in rows]), "search": targets[0]["value"],
                 **{f"paper at epoch {k}": rank_agreement([r["paper_curve"][k] for r in rows]) for k in CURVE_EPOCHS}}
    for row in rows:
        print(f"{row['architecture']:40s} " + "  ".join(f"{p} {row[p]:.3f}" for p in protocols))
    for name, value in agreement.items():
        print(f"Spearman with the paper protocol's ranking, {name}: {value:+.2f}")
    write_results("nas_fidelity", rows, targets, spearman=agreement, seeds=list(seeds))
    report_targets(targets)


if __name__ == "__main__":
    main()
