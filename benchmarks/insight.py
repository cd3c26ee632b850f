"""Insight (issue 15): layer sensitivity and the mixed precision it guides, surrogate-rule fidelity, drift detection,
cost per prediction.

Each part lives in its own module under benchmarks/ (insight_<part>.py) with `measure(quick) -> (rows, targets)`;
this script runs the parts asked for (all by default) one after another, never two at once (two timing
measurements on two cores disturb each other), and writes benchmarks/results/insight.json (insight_quick.json with
--quick): the rows of every part, tagged by part, and every target.

    python benchmarks/insight.py [--quick] [--part sensitivity|rules|drift|cost ...]
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import report_targets, write_results  # noqa: E402

PARTS = ("sensitivity", "rules", "drift", "cost")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer models, draws and repeats (under 10 minutes)")
    parser.add_argument("--part", action="append", choices=PARTS, help="run only this part (repeatable)")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    targets: list[dict[str, Any]] = []
    for part in args.part or PARTS:
        print(f"== {part}", flush=True)
        part_rows, part_targets = importlib.import_module(f"benchmarks.insight_{part}").measure(args.quick)
        rows += [{"part": part, **row} for row in part_rows]
        targets += part_targets
        report_targets(part_targets)
    # a run of some parts writes its own file: the full run's JSON keeps every part
    name = "_".join(["insight", *(args.part or []), *(["quick"] if args.quick else [])])
    print(f"wrote {write_results(name, rows, targets)}")


if __name__ == "__main__":
    main()
