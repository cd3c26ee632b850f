"""Architecture search on MNIST-1D against the paper's CNN: does each strategy find, in the same time budget, an
architecture that dominates it (higher test accuracy, no more parameters, no more measured latency)?

The reference is the MNIST-1D paper's CNN (Greydanus 2020: three stride-2 convolutions of 25 channels, kernels 5,
3, 3, then a linear layer; 5,210 parameters). Every strategy (random, regularized evolution, TPE, REINFORCE) runs
`to.nas` with the same space, training protocol and time budget; its size and latency ceilings are the
reference's own, measured first, so a candidate larger or slower than the reference is pruned before training.
The search trains briefly (the protocol below, with early stopping on validation), then reranks: its best
`--rerank` trials (default 5) are trained again by the paper's protocol on train and judged on validation, and the
best of those is chosen (the short protocol alone picked, on seed 1, CNNs 1-2 points behind the paper's once
trained long; `--rerank 0` is that earlier protocol, whose rows are in nas.json; reranked rows go to
nas_rerank.json). Its test figures are the chosen architecture and the reference each trained on train+val by the
rerank protocol. Dominance is judged after both are trained as the paper trains its models, the figure its 94%
comes from (Adam at 1e-2, batch 100, 6,000 steps, on the 4,000 samples of train+val; the paper's split has 4,000
for training), and their latencies timed in interleaved rounds in this process, at batch 1 on torch with one
thread.

    python benchmarks/nas.py [--quick] [--minutes M] [--rerank K] [--strategy S ...] [--seed N ...]

The full run (3 seeds x 4 strategies x 30 minutes, about 7 hours) may run a slice at a time: `--strategy` and
`--seed` run those searches only, and their rows join the rows other slices of the same budget wrote to nas.json
(each row names the CPU it ran on). Slices may run side by side, each pinned to its own core (`taskset -c N`):
each write merges under a lock with what the others wrote by then.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import tradeoff as to  # noqa: E402
from benchmarks.common import RESULTS, report_targets, target, write_results  # noqa: E402
from tradeoff.architectures import mnist1d_paper_cnn  # noqa: E402
from tradeoff.config import TrainSpec  # noqa: E402
from tradeoff.data import Split, mnist1d  # noqa: E402
from tradeoff.env import collect_env  # noqa: E402
from tradeoff.evaluation import Evaluator  # noqa: E402
from tradeoff.measure import artifact_size, count_parameters  # noqa: E402
from tradeoff.metrics import get_metric  # noqa: E402
from tradeoff.model import ModelHandle  # noqa: E402
from tradeoff.nas.space import Architecture  # noqa: E402
from tradeoff.training import Trainer  # noqa: E402

STRATEGIES = ("random", "evolution", "tpe", "rl")
SEEDS = (0, 1, 2)
REFERENCE = "tradeoff.architectures:mnist1d_paper_cnn"
SPACE = {"family": "cnn", "cnn": {"depth": {"low": 1, "high": 4}, "width": [8, 12, 16, 24, 32],
                                  "kernel": [3, 5, 7], "stride": [1, 2], "norm": ["none", "batch"],
                                  "skip": [False, True], "head": ["gap", "flatten"]}}
# The search protocol: the paper's optimizer settings (Adam 1e-2, batch 100) for at most 30 epochs, so that a short
# training ranks architectures as their long training will (at 3e-3 and batch 64 the picks of three strategies
# out of four lost to the reference once both trained long)
TRAIN = {"epochs": 30, "batch_size": 100, "lr": 0.01, "schedule": "cosine",
         "early_stopping": {"monitor": "metric", "patience": 5, "split": "val"}}
PAPER_STEPS, PAPER_BATCH = 6000, 100  # the paper's protocol: Adam at 1e-2, batch 100, 6,000 steps, no schedule
# out of each search's budget (a quarter at most): the rerank of 5 trials by the paper's protocol, about 15 s each
# on one core here
RERANK_RESERVE_S = 150


def _ceilings(threads: int) -> dict[str, float]:
    """The reference's size and latency on this machine: what a candidate may not exceed."""
    data = mnist1d()
    handle = ModelHandle(module=mnist1d_paper_cnn().eval())
    evaluator = Evaluator(handle, data, get_metric("accuracy"), threads, (1,), "torch")
    latency = evaluator.interleaved_latency([handle], "val")[0][1].p50_ms
    return {"max_size_bytes": artifact_size(handle).bytes, "max_latency_ms": latency}


def _paper_train(samples: int) -> dict[str, Any]:
    """The paper's protocol as train options, for a training split of `samples`."""
    return {"epochs": round(PAPER_STEPS * PAPER_BATCH / samples), "batch_size": PAPER_BATCH, "lr": 1e-2,
            "schedule": "constant", "early_stopping": None, "clip": None}


def _task(folder: Path, strategy: str, seed: int, minutes: float, ceilings: dict[str, float], rerank: int) -> Path:
    raw = {"name": f"nas-{strategy}-{seed}",
           "model": {"source": "torch", "factory": REFERENCE},
           "data": {"source": "builtin", "name": "mnist1d"}, "runtime": {"threads": 1, "target": "torch"},
           "train": {**TRAIN, "seed": seed}, "constraints": ceilings,
           "search": {"trials": 10_000, "seed": seed, "storage": "memory",
                      "timeout_s": minutes * 60 - (min(RERANK_RESERVE_S, minutes * 15) if rerank else 0)},
           "nas": {"strategy": strategy, "space": SPACE,
                   **({"rerank": {"top": rerank, "train": _paper_train(len(mnist1d().train))}} if rerank else {})}}
    path = folder / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _paper_protocol(model: ModelHandle, seed: int) -> float:
    """Test accuracy of `model`'s architecture trained anew as the paper trains: Adam at 1e-2, batch 100, 6,000
    steps, on train+val."""
    data = mnist1d()
    torch.manual_seed(seed)
    assert model.factory is not None
    module = Architecture(model.factory, model.factory_options).build()
    x, y = np.concatenate([data.train.x, data.val.x]), np.concatenate([data.train.y, data.val.y])
    options = TrainSpec(**_paper_train(len(x)), seed=seed)
    Trainer(options).fit(module, Split(x, y), data.val)
    module.eval()
    with torch.no_grad():
        predicted = module(torch.as_tensor(data.test.x)).argmax(1).numpy()
    return float((predicted == data.test.y).mean())


def _row(strategy: str, seed: int, result: to.NasResult, seconds: float, reference_paper: float) -> dict[str, Any]:
    assert result.reference is not None and result.reference_model is not None
    data = mnist1d()
    evaluator = Evaluator(result.reference_model, data, get_metric("accuracy"), 1, (1,), "torch")
    reference_latency, chosen_latency = (t[1].p50_ms for t in evaluator.interleaved_latency(
        [result.reference_model, result.model], "test", rounds=5))
    params = count_parameters(result.model)[0]
    reference_params = count_parameters(result.reference_model)[0]
    paper = _paper_protocol(result.model, seed)
    dominates = paper > reference_paper and params <= reference_params and chosen_latency <= reference_latency
    return {"strategy": strategy, "seed": seed, "seconds": seconds, "epochs_trained": result.epochs_trained,
            "architecture": str(Architecture(result.architecture["factory"], result.architecture["options"])),
            "test_accuracy": result.test_metric, "reference_test_accuracy": result.reference["test_metric"],
            "paper_protocol_test_accuracy": paper, "reference_paper_protocol_test_accuracy": reference_paper,
            "params": params, "reference_params": reference_params,
            "latency_ms": chosen_latency, "reference_latency_ms": reference_latency, "dominates": dominates,
            "reranked": result.reranked, "reference_rerank_metric": result.reference.get("rerank_metric")}


def _save(name: str, minutes: float, mine: list[dict[str, Any]], todo: list[tuple[int, str]], sliced: bool,
          seeds: list[int]) -> list[dict[str, Any]]:
    """Writes this run's rows and returns all rows. A full run is long, so it may run a slice at a time (`--strategy`,
    `--seed`), slices side by side included: a slice's rows join those the others of the same budget wrote by now,
    re-read under a lock so that two slices finishing together both keep theirs."""
    path = RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        others = json.loads(path.read_text())["rows"] if sliced and path.exists() else []
        rows = [r for r in others if r.get("minutes") == minutes and (r["seed"], r["strategy"]) not in todo] + mine
        rows.sort(key=lambda r: (r["seed"], STRATEGIES.index(r["strategy"])))
        write_results(name, rows, _targets(rows, seeds))
    return rows


def _print_table(rows: list[dict[str, Any]], minutes: float) -> None:
    table = Table(title=f"NAS on MNIST-1D, {minutes:g} min per search, against the paper's CNN")
    for column in ("strategy", "seed", "architecture", "test (search protocol)", "ref", "test (paper protocol)",
                   "ref", "params", "ref", "ms", "ref ms", "dominates"):
        table.add_column(column, justify="left" if column == "architecture" else "right")
    for r in rows:
        table.add_row(r["strategy"], str(r["seed"]), r["architecture"], f"{r['test_accuracy']:.3f}",
                      f"{r['reference_test_accuracy']:.3f}", f"{r['paper_protocol_test_accuracy']:.3f}",
                      f"{r['reference_paper_protocol_test_accuracy']:.3f}", str(r["params"]),
                      str(r["reference_params"]), f"{r['latency_ms']:.4f}", f"{r['reference_latency_ms']:.4f}",
                      "yes" if r["dominates"] else "no")
    Console(width=240).print(table)


def _targets(rows: list[dict[str, Any]], seeds: list[int]) -> list[dict[str, Any]]:
    """The issue's target (on each seed, a search found an architecture that dominates), then per strategy the
    share of its seeds whose architecture dominates; a seed not yet run counts as a miss."""
    found = sum(any(r["dominates"] for r in rows if r["seed"] == seed) for seed in seeds) / len(seeds)
    return [target("share of seeds on which a strategy found an architecture that dominates the paper's CNN", found,
                   1.0, ">="),
            *(target(f"{strategy}: share of seeds whose architecture dominates the paper's CNN",
                     sum(r["dominates"] for r in rows if r["strategy"] == strategy) / len(seeds), 1.0, ">=")
              for strategy in STRATEGIES)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, 2 minutes per strategy")
    parser.add_argument("--minutes", type=float, help="search budget per strategy and seed (default 30; quick 2)")
    parser.add_argument("--rerank", type=int, default=5,
                        help="trials reranked by the paper's protocol before the choice (0: none, as in nas.json)")
    parser.add_argument("--strategy", action="append", choices=STRATEGIES,
                        help="run only this strategy (repeatable); the rows join those of earlier slices")
    parser.add_argument("--seed", action="append", type=int, choices=SEEDS, help="run only this seed (repeatable)")
    arguments = parser.parse_args()
    seeds = [0] if arguments.quick else list(SEEDS)
    minutes = arguments.minutes or (2.0 if arguments.quick else 30.0)
    name = ("nas_quick" if arguments.quick else "nas") + ("_rerank" if arguments.rerank else "")
    sliced = bool(arguments.strategy or arguments.seed)
    todo = [(seed, strategy) for seed in (arguments.seed or seeds) for strategy in (arguments.strategy or STRATEGIES)]
    mine: list[dict[str, Any]] = []
    ceilings = _ceilings(threads=1)
    print(f"reference ceilings: {ceilings['max_size_bytes']} bytes, {ceilings['max_latency_ms']:.4f} ms", flush=True)
    cpu = collect_env()["cpu"]
    cpu_named = f"{cpu['model']} ({', '.join(flag for flag, present in cpu['flags'].items() if present)})"
    with tempfile.TemporaryDirectory() as tmp:
        for seed in sorted({seed for seed, _ in todo}):
            reference_paper = _paper_protocol(ModelHandle(module=mnist1d_paper_cnn(), factory=REFERENCE), seed)
            print(f"  the paper's CNN trained by its protocol, seed {seed}: test {reference_paper:.3f}", flush=True)
            for strategy in [s for s in STRATEGIES if (seed, s) in todo]:
                started = time.monotonic()
                result = to.nas(_task(Path(tmp), strategy, seed, minutes, ceilings, arguments.rerank),
                                out=Path(tmp) / "runs", quiet=True)
                row = _row(strategy, seed, result, time.monotonic() - started, reference_paper)
                mine.append({**row, "minutes": minutes, "cpu": cpu_named})
                print(f"  {strategy} seed {seed}: {row['architecture']} test {row['test_accuracy']:.3f} "
                      f"(reference {row['reference_test_accuracy']:.3f}); paper protocol "
                      f"{row['paper_protocol_test_accuracy']:.3f} (reference {reference_paper:.3f}), "
                      f"dominates: {row['dominates']}", flush=True)
                _save(name, minutes, mine, todo, sliced, seeds)  # a slice killed later keeps what finished
    rows = _save(name, minutes, mine, todo, sliced, seeds)
    _print_table(rows, minutes)
    targets = _targets(rows, seeds)
    report_targets(targets)
    if missing := [f"{s} seed {n}" for n in seeds for s in STRATEGIES
                   if not any(r["seed"] == n and r["strategy"] == s for r in rows)]:
        print(f"not yet run at {minutes:g} minutes (each counts as a miss): {', '.join(missing)}")
    print(f"wrote {RESULTS / f'{name}.json'}")


if __name__ == "__main__":
    main()
