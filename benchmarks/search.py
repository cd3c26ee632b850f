"""Search that saves compute: TPE with a pruner against random search, tuning a CNN on MNIST-1D.

Both run `to.tune` on the same space (learning rate, weight decay, batch size, channels per layer, kernel), trials
of the same epochs, no early stopping inside a trial. Random search trains each of its trials to the end; TPE's
trials are stopped by Hyperband (and, in a second row, successive halving) at the epochs where they fall behind,
so the same compute buys it more trials: it may run up to three times as many. The figure is the compute (epochs
trained, counted) TPE spent until its first trial whose validation accuracy reached the best that random search
found with its whole budget, as a share of that budget, averaged over seeds; a seed where TPE never reached it
within random's budget counts as 1.

    python benchmarks/search.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import tradeoff as to  # noqa: E402
from benchmarks.common import report_targets, target, write_results  # noqa: E402

SPACE = {
    "train.lr": {"low": 1.0e-4, "high": 3.0e-2, "log": True},
    "train.weight_decay": {"low": 1.0e-6, "high": 1.0e-2, "log": True},
    "train.batch_size": [32, 64, 128],
    "model.channels": {"layers": {"low": 1, "high": 3}, "width": [8, 16, 32, 64]},
    "model.kernel": [3, 5, 7],
}


def _task(folder: Path, seed: int, trials: int, epochs: int, sampler: str, pruner: str) -> Path:
    raw = {"name": f"{sampler}-{pruner}-{seed}",
           "model": {"source": "torch", "factory": "tradeoff.architectures:CNN",
                     "options": {"input_shape": [1, 40], "classes": 10, "channels": [16, 32], "norm": "batch"}},
           "data": {"source": "builtin", "name": "mnist1d", "seed": 0},
           "runtime": {"threads": 1},
           "train": {"epochs": epochs, "batch_size": 64, "early_stopping": None, "seed": seed},
           "search": {"trials": trials, "seed": seed, "storage": "memory"},
           "tune": {"space": SPACE, "sampler": sampler, "pruner": pruner}}
    path = folder / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _trials(folder: Path, seed: int, trials: int, epochs: int, sampler: str, pruner: str) -> list[dict[str, Any]]:
    started = time.monotonic()
    result = to.tune(_task(folder, seed, trials, epochs, sampler, pruner), out=folder / "runs", quiet=True)
    summary = json.loads((result.run_dir / "tune.json").read_text())
    print(f"  {sampler}+{pruner} seed {seed}: best {summary['best']['values']['metric']:.4f}, "
          f"{summary['compute']['epochs_trained']} epochs, {time.monotonic() - started:.0f} s", flush=True)
    return summary["trials"]


def epochs_to_reach(trials: list[dict[str, Any]], goal: float) -> int | None:
    """Epochs spent, in trial order, up to and including the first trial that reached `goal`; None if none did."""
    spent = 0
    for trial in sorted(trials, key=lambda t: t["number"]):
        spent += int(trial["values"].get("epochs") or 0)
        if trial["state"] == "complete" and trial["values"]["metric"] >= goal:
            return spent
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, 12 trials of 8 epochs")
    quick = parser.parse_args().quick
    seeds, trials, epochs = ([0], 12, 8) if quick else ([0, 1, 2], 30, 15)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for seed in seeds:
            random = _trials(folder, seed, trials, epochs, "random", "none")
            budget = sum(int(t["values"].get("epochs") or 0) for t in random)
            goal = max(t["values"]["metric"] for t in random if t["state"] == "complete")
            for pruner in ("hyperband", "successive_halving"):
                tpe = _trials(folder, seed, 3 * trials, epochs, "tpe", pruner)
                reached = epochs_to_reach(tpe, goal)
                rows.append({"seed": seed, "pruner": pruner, "random_best": goal, "random_epochs": budget,
                             "tpe_best": max(t["values"]["metric"] for t in tpe if t["state"] == "complete"),
                             "tpe_epochs": sum(int(t["values"].get("epochs") or 0) for t in tpe),
                             "tpe_pruned": sum(t["state"] == "pruned" for t in tpe),
                             "epochs_to_reach": reached,
                             "share": min(1.0, reached / budget) if reached is not None else 1.0})
    table = Table(title=f"TPE + pruner ({3 * trials} trials at most) vs random search ({trials} trials), "
                        f"{epochs} epochs each, CNN on MNIST-1D")
    for column in ("seed", "pruner", "random best", "random epochs", "TPE best", "TPE epochs", "pruned",
                   "epochs to reach random's best", "share of random's compute"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(str(r["seed"]), r["pruner"], f"{r['random_best']:.4f}", str(r["random_epochs"]),
                      f"{r['tpe_best']:.4f}", str(r["tpe_epochs"]), str(r["tpe_pruned"]),
                      "never" if r["epochs_to_reach"] is None else str(r["epochs_to_reach"]), f"{r['share']:.2f}")
    Console(width=240).print(table)
    targets = [target(f"TPE+{pruner}: share of random search's compute to reach its best (mean of {len(seeds)} seeds)",
                      sum(r["share"] for r in rows if r["pruner"] == pruner) / len(seeds), 0.5, "<=")
               for pruner in ("hyperband", "successive_halving")]
    report_targets(targets)
    print(f"wrote {write_results('search_quick' if quick else 'search', rows, targets)}")


if __name__ == "__main__":
    main()
