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


def write_results(name: str, rows: list[dict[str, Any]], targets: list[dict[str, Any]]) -> Path:
    path = RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"rows": rows, "targets": targets}, indent=2) + "\n")
    return path
