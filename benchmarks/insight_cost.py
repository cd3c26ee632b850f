"""Cost per prediction, and what optimizing costs (seed 001): the demo task (LeNet-300-100 on MNIST-5k) optimized
with `objectives: [cost, size]` at a price of 0.10 USD per hour.

Rows: USD per million predictions and energy per prediction (with its label: measured by RAPL or estimated) of the
baseline and the shipped model at batch 1 and 32 on test, and what the run spent: the baseline's measurement, the
trials together and the whole run (wall and CPU seconds, peak memory, energy). Targets: the cost figures reproduce
from report.json (the price and each recorded p50), and the run's wall time covers its baseline and trials.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

import tradeoff as to  # noqa: E402
from benchmarks.common import target  # noqa: E402
from examples.mnist import HERE, LeNet300, train  # noqa: E402
from tradeoff.report.schema import Measured, Report, Spend  # noqa: E402

PRICE = 0.10  # USD per hour
BATCHES = [1, 32]


def _task(folder: Path, trials: int) -> Path:
    raw = {"name": "cost", "model": {"source": "torch", "factory": "examples.mnist:LeNet300",
                                     "weights": str(train(LeNet300, None, HERE / "lenet300.safetensors"))},
           "data": {"source": "builtin", "name": "mnist5k", "split": [0.7, 0.1, 0.2], "seed": 0},
           "metric": "accuracy", "constraints": {"max_metric_drop": 0.005}, "objectives": ["cost", "size"],
           "cost": {"usd_per_hour": PRICE}, "runtime": {"target": "auto", "threads": 2, "batch_sizes": BATCHES},
           "search": {"trials": trials, "seed": 0}}
    path = folder / "cost.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _model_rows(which: str, measured: Measured) -> list[dict[str, Any]]:
    rows = []
    for batch, cost in measured.cost_by_batch.items():
        energy = cost.energy_per_prediction
        rows.append({"what": which, "batch": batch, "runtime": measured.runtime,
                     "p50_ms": measured.latency_by_batch[batch].p50, "usd_per_million": cost.usd_per_million,
                     "energy_j_per_prediction": energy.joules if energy else None,
                     "energy": energy.source if energy else None})
    return rows


def _spend_row(which: str, spend: Spend) -> dict[str, Any]:
    return {"what": which, "wall_s": spend.wall_s, "cpu_s": spend.cpu_s, "peak_memory_bytes": spend.peak_memory_bytes,
            "energy_j": spend.energy.joules, "energy": spend.energy.source}


def _worst_reproduction_error(report: Report) -> float:
    """The largest relative difference between a recorded cost per million and the price over the throughput its
    recorded p50 gives."""
    errors = []
    for measured in (report.baseline, report.best, *(f.measured for f in report.finalists)):
        for batch, cost in measured.cost_by_batch.items():
            latency = measured.latency_by_batch[batch]
            recomputed = PRICE * latency.p50 / (3.6 * batch)
            errors.append(abs((cost.usd_per_million or 0.0) - recomputed) / recomputed)
    return max(errors)


def measure(quick: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    with tempfile.TemporaryDirectory() as tmp:
        result = to.optimize(_task(Path(tmp), 4 if quick else 12), out=Path(tmp) / "runs", quiet=True)
        report = Report.model_validate(json.loads(result.report.json_path.read_text()))
    assert report.spend is not None
    trials = [t.spend for t in report.trials if t.spend is not None]
    together = Spend(wall_s=sum(s.wall_s for s in trials), cpu_s=sum(s.cpu_s for s in trials),
                     peak_memory_bytes=max((s.peak_memory_bytes or 0 for s in trials), default=None),
                     energy=trials[0].energy.model_copy(update={"joules": sum(s.energy.joules for s in trials)}))
    rows = [*_model_rows("baseline (test)", report.baseline), *_model_rows("shipped (test)", report.best),
            _spend_row("baseline measured", report.spend.baseline), _spend_row(f"{len(trials)} trials", together),
            _spend_row("whole run", report.spend.run)]
    for row in rows:
        print(row, flush=True)
    covered = report.spend.run.wall_s / (report.spend.baseline.wall_s + together.wall_s)
    targets = [target("cost per million reproduces from report.json: worst relative error",
                      _worst_reproduction_error(report), 1e-9, "<="),
               target("run wall time over baseline + trials' wall time", covered, 1.0, ">=")]
    return rows, targets
