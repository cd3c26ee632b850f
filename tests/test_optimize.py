"""One optimize run end to end on a real model and real data: what a user reads and relies on afterwards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import tradeoff as to
from tradeoff.artifact import load_artifact
from tradeoff.config import load_task
from tradeoff.optimize import OptimizeResult, optimize
from tradeoff.replay import apply, evaluate
from tradeoff.runtimes import runtime_for

REPORT_KEYS = {"baseline", "best", "trials", "pareto", "env"}
MEASURED_KEYS = {"metric", "latency_ms", "size_bytes", "split"}


def test_report_json_has_the_keys_scripts_read(optimized_run: tuple[OptimizeResult, Path]) -> None:
    result, _ = optimized_run
    report = json.loads((result.run_dir / "report.json").read_text())
    assert REPORT_KEYS <= set(report)
    assert MEASURED_KEYS <= set(report["baseline"]) and MEASURED_KEYS <= set(report["best"])
    assert {"p50", "p95"} <= set(report["best"]["latency_ms"])
    assert {"recipe", "artifact"} <= set(report["best"])
    assert report["baseline"]["split"] == report["best"]["split"] == "test"
    assert {"number", "recipe", "state"} <= set(report["trials"][0])
    assert {"packages", "cpu", "threads", "seeds"} <= set(report["env"])


def test_the_report_warns_of_slow_int8_exactly_where_this_cpu_lacks_vnni_or_amx(
        optimized_run: tuple[OptimizeResult, Path]) -> None:
    report = optimized_run[0].report.data
    warned = any("int8 kernels may run slower" in warning for warning in report.warnings)
    assert warned == (not report.env["cpu"]["fast_int8"]), report.warnings


def test_search_spends_its_budget_on_distinct_recipes(optimized_run: tuple[OptimizeResult, Path]) -> None:
    trials = optimized_run[0].report.data.trials
    measured = [t for t in trials if t.state in ("complete", "pruned", "failed")]
    assert len(measured) == 8
    assert len({json.dumps(t.recipe, sort_keys=True) for t in measured}) == 8


def test_best_meets_the_constraint_on_the_test_split_and_is_cheaper(optimized_run: tuple[OptimizeResult, Path]) -> None:
    best = optimized_run[0].report.data.best
    assert not best.is_baseline
    assert best.ratios.metric_drop <= 0.02
    assert best.ratios.size_reduction > 1.5 or best.ratios.speedup > 1.2
    shipped = next(f for f in optimized_run[0].report.data.finalists if f.trial == best.trial)
    assert shipped.meets_constraints and not shipped.violations


def test_run_directory_holds_recipe_artifact_manifest_and_report(optimized_run: tuple[OptimizeResult, Path]) -> None:
    root = optimized_run[0].run_dir
    for name in ("task.yaml", "env.json", "study.db", "report.json", "report.html", "best/recipe.yaml",
                 "best/metrics.json", "best/MANIFEST"):
        assert (root / name).is_file(), name
    manifest = (root / "best" / "MANIFEST").read_text()
    assert optimized_run[0].report.data.best.artifact in manifest
    assert all((root / "trials" / str(t.number) / "recipe.yaml").is_file()
               for t in optimized_run[0].report.data.trials if t.state != "skipped")


def test_best_artifact_reloads_and_gives_the_reported_metric(optimized_run: tuple[OptimizeResult, Path]) -> None:
    result, task_path = optimized_run
    measured = evaluate(load_task(task_path), model=result.run_dir / "best", split="test")
    assert measured.metric == pytest.approx(result.report.data.best.metric, abs=1e-9)


def test_applying_the_recipe_replays_the_same_metric(optimized_run: tuple[OptimizeResult, Path],
                                                     tmp_path: Path) -> None:
    result, task_path = optimized_run
    measured = apply(result.run_dir / "best" / "recipe.yaml", load_task(task_path), out=tmp_path / "applied").measured
    assert measured.metric == pytest.approx(result.report.data.best.metric, abs=1e-9)
    original = load_artifact(result.run_dir / "best")
    applied = load_artifact(tmp_path / "applied")
    batch = to.data.digits(seed=0).test.x[:64]
    np.testing.assert_allclose(runtime_for(applied).load(applied, 2)(batch),
                               runtime_for(original).load(original, 2)(batch), atol=1e-6)


def test_unmeetable_constraint_ships_the_baseline_and_names_the_binding_constraint(task_file, tmp_path: Path) -> None:
    task = task_file(constraints={"max_metric_drop": 0.0, "max_size_bytes": 1000}, search={"trials": 3})
    report = optimize(task, out=tmp_path, quiet=True).report.data
    assert report.best.is_baseline and report.best.recipe["steps"] == []
    assert report.binding is not None and report.binding.constraint == "max_size_bytes"
    assert report.binding.nearest_trial is not None and report.binding.missed_by > 0
    assert (tmp_path / "digits" / "best" / "MANIFEST").is_file()


def test_a_latency_ceiling_relative_to_the_baseline_is_judged_on_the_retimed_finalists(task_file,
                                                                                       tmp_path: Path) -> None:
    # the digits MLP's int8 and pruned recipes run at 0.25-0.35 of its latency here: a ceiling among them
    task = task_file(constraints={"max_metric_drop": 0.02, "max_latency_ratio": 0.3}, objectives=["size"])
    report = optimize(task, out=tmp_path, quiet=True).report.data
    if not report.finalists:  # none was within it during the search (a slower CPU): the ceiling binds
        assert report.binding is not None and report.binding.constraint == "max_latency_ratio"
    for finalist in report.finalists:  # the ratio to the baseline timed in the same rounds decides, nothing else
        slower = finalist.measured.latency_ms.p50 / report.baseline_val.latency_ms.p50 > 0.3
        assert ("max_latency_ratio" in [v.constraint for v in finalist.violations]) == slower
        assert (finalist.trial == report.best.trial) <= (not slower)


def test_the_mobile_preset_spends_its_first_trials_on_deep_compression(task_file, tmp_path: Path) -> None:
    """A new user's size-first run starts where the field found the smallest models, not at random."""
    from tradeoff.passes.known_recipes import KNOWN_RECIPES
    from tradeoff.recipe import Recipe

    task = task_file(preset="mobile", search={"trials": 1, "seed": 0})
    result = optimize(task, out=tmp_path, quiet=True)
    (trial,) = result.report.data.trials
    assert Recipe(**trial.recipe) == Recipe(steps=KNOWN_RECIPES["deep-compression"][0])
    assert trial.size_zstd_bytes is not None  # measured, if only to learn it loses too much on this small MLP
    assert result.baseline.size.bytes / trial.size_zstd_bytes > 20  # pruned, shared in 4 bits, stored sparse


def test_python_api_takes_a_module_a_data_bundle_and_a_space(mlp, digits, tmp_path: Path) -> None:
    result = to.optimize(model=mlp.module, data=digits, metric="accuracy", name="api",
                         constraints={"max_metric_drop": 0.02}, objectives=["size"],
                         search={"trials": 3, "passes": ["export.onnx", "quantize.dynamic"]},
                         space={"quantize__per_channel": True}, out=tmp_path, quiet=True)
    assert result.report.data.objectives == ["size"]
    steps = [s for t in result.report.data.trials for s in t.recipe["steps"] if s["pass"] == "quantize.dynamic"]
    assert steps and all(s["per_channel"] for s in steps)
    assert result.best.measured.size.bytes < result.baseline.size.bytes
    saved = result.best.save(tmp_path / "saved")
    assert (saved / "recipe.yaml").is_file() and (saved / "MANIFEST").is_file()


def test_an_onnx_file_is_optimized_without_torch(mlp, digits, task_file, tmp_path: Path) -> None:
    from tradeoff.passes import Context, build_pass

    exported = build_pass({"pass": "export.onnx"}).apply(mlp, Context(data=digits, threads=2))
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(exported.onnx_bytes)
    # Size first: int8 makes a file smaller on every CPU, while whether it runs faster than float depends on the
    # CPU's int8 instructions (and on a model this small rarely does).
    task = task_file(model={"source": "onnx", "path": str(onnx_file)}, search={"trials": 3, "seed": 0},
                     objectives=["size", "latency"])
    report = optimize(task, out=tmp_path / "runs", quiet=True).report.data
    assert report.baseline.runtime == "onnxruntime" and report.baseline.format == "onnx"
    assert all("export.onnx" not in t.passes for t in report.trials)
    assert report.best.size_bytes < report.baseline.size_bytes


def test_baseline_and_finalists_are_timed_in_interleaved_rounds(optimized_run: tuple[OptimizeResult, Path]) -> None:
    """Compared figures come from the same moments: each is the median ratio over interleaved rounds, which make
    more calls of the digits MLP than one plain measurement does (500 at most)."""
    result, _ = optimized_run
    report = json.loads((result.run_dir / "report.json").read_text())
    for measured in (report["baseline"], report["best"], *(f["measured"] for f in report["finalists"])):
        assert measured["latency_ms"]["runs"] > 500
