"""Many workers on one study: trials per hour of two `tradeoff worker` processes against one, on PostgreSQL.

The demo task (LeNet-300-100 on MNIST-5k, the balanced preset) with one thread per worker: N trials measured by one
worker, then the same N by two workers sharing one study on a throwaway PostgreSQL server on loopback (the one the
tests start: tradeoff.testing.postgres). Each figure is the wall time from starting the workers to the last one's
exit, so each worker's start (imports, data, its own baseline) counts alike in both. The target (issue 13): two
workers reach >= 1.6x the trials per hour of one. A machine with fewer than two free cores cannot show it; run it
on a quiet one. Writes benchmarks/results/search_workers.json.

    python benchmarks/search_workers.py [--quick] [--trials N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import report_targets, target, write_results  # noqa: E402
from examples.mnist import HERE, LeNet300, train  # noqa: E402
from tradeoff.testing.postgres import postgres_server  # noqa: E402

TRADEOFF = Path(sys.executable).with_name("tradeoff")


def task_file(folder: Path, name: str, trials: int) -> Path:
    weights = train(LeNet300, None, HERE / "lenet300.safetensors")
    task = yaml.safe_load((HERE / "mnist_mlp.yaml").read_text())
    task.update(name=name, model={**task["model"], "weights": str(weights)},
                runtime={**task["runtime"], "threads": 1}, search={**task["search"], "trials": trials})
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(task))
    return path


def workers(task: Path, storage: str, count: int) -> float:
    """Seconds from starting `count` workers on the task's study to the last one's exit."""
    started = time.monotonic()
    running = [subprocess.Popen([str(TRADEOFF), "worker", str(task), "--storage", storage, "--quiet"], cwd=ROOT,
                                stderr=subprocess.PIPE, text=True) for _ in range(count)]
    for process in running:
        _, err = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"a worker failed:\n{err[-3000:]}")
    return time.monotonic() - started


def counted(storage: str, name: str) -> int:
    import optuna

    from tradeoff.search.record import records

    return sum(r.counted for r in records(optuna.load_study(study_name=name, storage=storage)))


def run(trials: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows = []
    with tempfile.TemporaryDirectory() as folder, postgres_server() as storage:
        for count in (1, 2):
            name = f"workers-{count}"
            seconds = workers(task_file(Path(folder), name, trials), storage, count)
            done = counted(storage, name)
            rows.append({"workers": count, "threads_per_worker": 1, "trials": done, "seconds": round(seconds, 1),
                         "trials_per_hour": round(done / seconds * 3600, 1)})
            print(f"{count} worker(s): {done} trials in {seconds:.1f} s ({rows[-1]['trials_per_hour']:.0f} per hour)")
    speedup = rows[1]["trials_per_hour"] / rows[0]["trials_per_hour"]
    return rows, [target("two workers: trials per hour / one worker's", speedup, 1.6, ">=")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="12 trials instead of 40")
    parser.add_argument("--trials", type=int, help="the budget of each study (overrides --quick)")
    args = parser.parse_args()
    rows, targets = run(args.trials or (12 if args.quick else 40))
    report_targets(targets)
    name = "search_workers_quick" if args.quick and not args.trials else "search_workers"
    print(f"wrote {write_results(name, rows, targets)}")


if __name__ == "__main__":
    main()
