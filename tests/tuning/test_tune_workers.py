"""A tuning study shared by `tradeoff worker` processes on a real PostgreSQL server, finalized by `tradeoff tune`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from tradeoff.search.record import records

TRADEOFF = Path(sys.executable).with_name("tradeoff")
pytestmark = pytest.mark.skipif(not TRADEOFF.is_file(), reason="the tradeoff command is not installed beside this "
                                                               "Python")


def test_two_workers_share_a_tuning_study_and_tune_finalizes_from_every_trial(postgres_url: str,
                                                                              tmp_path: Path) -> None:
    name, budget = "tune-workers", 6
    task = tmp_path / "task.yaml"
    task.write_text(yaml.safe_dump({
        "name": name, "data": {"source": "builtin", "name": "digits", "standardize": True},
        "model": {"source": "torch", "factory": "tradeoff.architectures:MLP",
                  "options": {"input_shape": [64], "classes": 10, "widths": [32]}},
        "runtime": {"threads": 1}, "train": {"epochs": 2, "early_stopping": None},
        "search": {"trials": budget, "seed": 0, "heartbeat_s": 1},
        "tune": {"objectives": ["metric", "latency"],
                 "space": {"train.lr": {"low": 1.0e-3, "high": 3.0e-2, "log": True},
                           "model.widths": {"layers": 1, "width": [16, 32, 64, 128]}}}}))
    workers = [subprocess.Popen([str(TRADEOFF), "worker", str(task), "--storage", postgres_url], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    measured = []
    for worker in workers:
        out, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err[-3000:]
        measured.append(int(re.search(r"measured (\d+) trials", out)[1]))  # type: ignore[index]
    assert sum(measured) == budget and not (tmp_path / "runs").exists()
    counted = [r for r in records(optuna.load_study(study_name=name, storage=postgres_url)) if r.counted]
    assert len(counted) == budget and len({r.worker for r in counted}) == sum(m > 0 for m in measured)
    for r in (r for r in counted if r.state == "complete"):  # latency told as a ratio to the worker's own baseline
        ratio, ms, base = (r.values[f"{k}.p50@b1"] for k in ("latency_ratio", "latency_ms", "baseline_latency_ms"))
        assert ratio == pytest.approx(ms / base) and r.objectives == (-r.values["metric"], ratio)

    final = subprocess.run([str(TRADEOFF), "tune", str(task), "--storage", postgres_url, "--out",
                            str(tmp_path / "runs")], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr[-3000:]
    assert f"resuming the search: {budget} of {budget} trials already measured" in final.stdout
    summary = json.loads((tmp_path / "runs" / name / "tune.json").read_text())
    assert sorted(t["number"] for t in summary["trials"]) == sorted(r.number for r in counted)
    assert (tmp_path / "runs" / name / "tuned.yaml").is_file()
