"""What every benchmark script shares: the results file format and the target check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def target(name: str, value: float, goal: float, op: str) -> dict[str, Any]:
    return {"name": name, "value": value, "target": goal, "op": op}


def report_targets(targets: list[dict[str, Any]]) -> None:
    for t in targets:
        met = t["value"] >= t["target"] if t["op"] == ">=" else t["value"] <= t["target"]
        print(f"{'MET ' if met else 'MISS'} {t['name']}: {t['value']:.3f} (target {t['op']} {t['target']})")


def write_results(name: str, rows: list[dict[str, Any]], targets: list[dict[str, Any]], **extra: Any) -> Path:
    """The rows, the targets, what else the benchmark keeps (`extra`: a search's trials), and the CPU they were
    measured on (model, int8/bf16 flags): figures from an AVX2 CPU and from one with VNNI are not comparable."""
    from tradeoff.env import collect_env

    path = RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"rows": rows, "targets": targets, **extra, "cpu": collect_env()["cpu"]}, indent=2)
                    + "\n")
    return path
