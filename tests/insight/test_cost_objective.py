"""Cost per million predictions as an objective and a ceiling, and what optimizing cost, on a real optimize run of the
digits MLP (insight/cost.py; the figures themselves: tests/insight/test_cost.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tradeoff.cli import app
from tradeoff.config import CostSpec
from tradeoff.data import DataBundle
from tradeoff.energy import rapl_zones
from tradeoff.errors import ConfigError
from tradeoff.evaluation import Evaluator
from tradeoff.metrics import get_metric
from tradeoff.model import ModelHandle
from tradeoff.optimize import optimize
from tradeoff.report.schema import Report

PRICE = 0.10  # USD per hour


def test_cost_without_a_price_is_one_line_naming_the_fix(task_file, tmp_path: Path) -> None:
    for section in ({"objectives": ["cost"]},
                    {"constraints": {"max_metric_drop": 0.02, "max_cost_per_million": 0.01}}):
        task = task_file(**section)
        result = CliRunner().invoke(app, ["optimize", str(task), "--quiet", "--out", str(task.parent / "runs")])
        assert result.exit_code == 2, result.output
        message = result.stderr.strip()
        assert len(message.splitlines()) == 1 and "usd_per_hour" in message, message
        assert "Traceback" not in result.output
    with pytest.raises(ConfigError, match="cost: {usd_per_hour"):
        optimize(task_file(objectives=["cost"]), out=tmp_path / "runs", quiet=True)


def test_an_optimize_run_on_cost_records_what_each_trial_and_the_run_cost_and_ships_under_the_ceiling(
        task_file, tmp_path: Path, mlp: ModelHandle, digits: DataBundle) -> None:
    timed = Evaluator(mlp, digits, get_metric("accuracy"), 2, (1,), cost=CostSpec(usd_per_hour=PRICE))
    baseline_cost = timed.measure(mlp, "val").values()["cost_usd_per_million@b1"]
    assert baseline_cost is not None
    ceiling = 0.9 * baseline_cost  # only a candidate at least 10% cheaper than the task's model may ship
    task = task_file(objectives=["cost"], cost={"usd_per_hour": PRICE},
                     constraints={"max_metric_drop": 0.02, "max_cost_per_million": ceiling},
                     runtime={"target": "auto", "threads": 2, "batch_sizes": [1, 16]},
                     search={"trials": 3, "seed": 0})
    result = optimize(task, out=tmp_path / "runs", quiet=True)
    report = Report.model_validate(json.loads(result.report.json_path.read_text()))

    assert report.trials and all(t.spend is not None for t in report.trials)
    assert report.spend is not None
    run = report.spend.run
    assert run.wall_s >= sum(t.spend.wall_s for t in report.trials if t.spend) + report.spend.baseline.wall_s
    assert run.cpu_s > 0 and run.peak_memory_bytes and run.peak_memory_bytes > 0
    assert run.energy.source == ("measured" if rapl_zones() else "estimated")

    for trial in report.trials:  # the ceiling judged on validation during the search
        over = trial.cost_usd_per_million is not None and trial.cost_usd_per_million > ceiling
        assert over == any(v.constraint == "max_cost_per_million" for v in trial.violations)
        assert not (over and trial.feasible)
    shipped = [f for f in report.finalists if f.trial == report.best.trial]
    if not report.best.is_baseline:  # and at the choice, on the finalists' re-timed validation figures
        cost = shipped[0].measured.cost_by_batch[1].usd_per_million
        assert cost is not None and cost <= ceiling
    assert report.best.cost_by_batch[16].usd_per_million is not None  # test figures at each batch size

    html = result.report.html_path.read_text()
    assert "USD per million predictions (batch 16)" in html and 'id="run-spend"' in html
    assert "(estimated)" in html or "(measured)" in html


def test_evaluate_prints_the_cost_per_million_when_the_task_gives_a_price(task_file) -> None:
    task = task_file(cost={"usd_per_hour": PRICE}, runtime={"target": "auto", "threads": 2, "batch_sizes": [1, 4]})
    result = CliRunner().invoke(app, ["evaluate", str(task), "--split", "val"])
    assert result.exit_code == 0, result.output
    assert "USD per million predictions, batch 4" in result.output
    assert "energy per prediction, batch 1" in result.output
