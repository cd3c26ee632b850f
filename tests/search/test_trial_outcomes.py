"""What a search says about its trials, run as a user runs it (`tradeoff optimize` without a terminal): a failure
names its pass and cause and keeps its traceback apart, an export that cannot work is tried once, library output
goes to log.txt, and samples that measured nothing are counted, not listed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from safetensors.torch import save_file
from unusual_models import BranchyMLP, DigitsGRU

import tradeoff as to
from tradeoff.config import ModelSpec
from tradeoff.model import load_model
from tradeoff.optimize import optimize
from tradeoff.passes import Context
from tradeoff.recipe import Recipe
from tradeoff.search.record import records
from tradeoff.search.space import PREFIX_CACHE, default_space

TESTS = Path(__file__).resolve().parents[1]
TRADEOFF = Path(sys.executable).with_name("tradeoff")
BUDGET = 10


def _trained(factory: type[torch.nn.Module], data: to.data.DataBundle, path: Path, epochs: int = 10) -> Path:
    torch.manual_seed(0)
    module = factory()
    to.training.fit(module, data.train, data.val, epochs=epochs, lr=3e-3, early_stopping={"patience": 3}, seed=0)
    save_file(module.state_dict(), str(path))
    return path


@pytest.fixture(scope="module")
def unexportable_task(tmp_path_factory: pytest.TempPathFactory, digits) -> Path:
    """A 10-trial search of a model export.onnx cannot export."""
    folder = tmp_path_factory.mktemp("branchy")
    task = folder / "task.yaml"
    task.write_text(yaml.safe_dump({
        "name": "branchy", "metric": "accuracy", "constraints": {"max_metric_drop": 0.05},
        "model": {"source": "torch", "factory": "unusual_models:BranchyMLP",
                  "weights": str(_trained(BranchyMLP, digits, folder / "branchy.safetensors"))},
        "data": {"source": "builtin", "name": "digits", "seed": 0},
        "runtime": {"target": "auto", "threads": 2, "timing_s": 0.3},  # the tests read trial states, not latency
        "search": {"trials": BUDGET, "seed": 0, "finalists": 1,  # the tests read trials; a finalist is rebuilt
                   "passes": ["export.onnx", "quantize.static", "quantize.dynamic", "prune.magnitude"]},
    }))
    return task


def _optimize(task: Path, out: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """`tradeoff optimize` with its output piped, as in CI or under nohup: no terminal."""
    return subprocess.run([str(TRADEOFF), "optimize", str(task), "--out", str(out), *options], cwd=TESTS,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def unexportable_run(unexportable_task: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    done = _optimize(unexportable_task, unexportable_task.parent / "runs")
    assert done.returncode == 0, done.stderr[-3000:]
    return done, unexportable_task.parent / "runs" / "branchy"


def _report(run_dir: Path) -> dict:
    return json.loads((run_dir / "report.json").read_text())


@pytest.mark.skipif(not TRADEOFF.is_file(), reason="the tradeoff command is not installed beside this Python")
def test_a_failed_trial_names_the_pass_and_cause_and_its_traceback_goes_to_error_txt(unexportable_run) -> None:
    _, run_dir = unexportable_run
    failed = [t for t in _report(run_dir)["trials"] if t["state"] == "failed"]
    assert failed
    note = failed[0]["note"]
    assert note.startswith("export.onnx: GuardOnDataDependentSymNode: Could not guard on data-dependent expression")
    assert "\x1b" not in note and "before torch-side quantization" not in note  # no colours, no hint that misleads
    error = (run_dir / "trials" / str(failed[0]["number"]) / "error.txt").read_text()
    assert error.startswith("Traceback") and "GuardOnDataDependentSymNode" in error and "\x1b" not in error


@pytest.mark.skipif(not TRADEOFF.is_file(), reason="the tradeoff command is not installed beside this Python")
def test_an_export_that_fails_is_measured_once_and_the_budget_goes_to_recipes_that_can_work(unexportable_run) -> None:
    done, run_dir = unexportable_run
    report = _report(run_dir)
    failed = [t for t in report["trials"] if t["state"] == "failed"]
    measured = [t for t in report["trials"] if t["state"] != "failed"]
    assert len(failed) == 1 and "export.onnx" in failed[0]["passes"]
    assert len(measured) == BUDGET - 1 and not any("export.onnx" in t["passes"] for t in measured)
    stats = report["search_stats"]
    assert (stats["measured"], stats["failed"]) == (BUDGET - 1, 1) and stats["skipped"] >= 1
    assert f"trials: {BUDGET - 1} measured, 1 failed; not listed, at no cost: {stats['skipped']} skipped" in done.stdout
    study = optuna.load_study(study_name="branchy", storage=f"sqlite:///{run_dir / 'study.db'}")
    learned = [r for r in records(study) if r.state == "skipped" and r.note and r.note.startswith("not built: ")]
    assert learned and all("export.onnx: GuardOnDataDependentSymNode" in r.note for r in learned)


@pytest.mark.skipif(not TRADEOFF.is_file(), reason="the tradeoff command is not installed beside this Python")
def test_a_resumed_search_remembers_what_failed_before(unexportable_run) -> None:
    _, run_dir = unexportable_run
    more = _optimize(run_dir.parent.parent / "task.yaml", run_dir.parent, "--trials", str(BUDGET + 2))
    assert more.returncode == 0, more.stderr[-3000:]
    assert f"resuming the search: {BUDGET} of {BUDGET + 2} trials already measured" in more.stdout
    stats = _report(run_dir)["search_stats"]
    assert (stats["measured"], stats["failed"]) == (BUDGET + 1, 1)  # the export was not tried again


@pytest.mark.skipif(not TRADEOFF.is_file(), reason="the tradeoff command is not installed beside this Python")
def test_library_output_goes_to_log_txt_and_the_terminal_gets_one_line_per_trial(unexportable_run) -> None:
    done, run_dir = unexportable_run
    assert done.stderr == ""  # the exporter's graphs and warnings, ONNX Runtime's chatter: none of it here
    trial_lines = [line for line in done.stdout.splitlines() if re.match(r"trial \d+ \(\d+/10\): ", line)]
    assert len(trial_lines) == BUDGET  # no terminal, no progress bar: one plain line per trial instead
    assert "def forward" not in done.stdout and "torch.onnx" not in done.stdout
    log = (run_dir / "log.txt").read_text()
    assert "def forward" in log  # the torch.fx graph the exporter printed when it gave up


@pytest.mark.skipif(not TRADEOFF.is_file(), reason="the tradeoff command is not installed beside this Python")
def test_debug_stops_at_the_first_failing_candidate_with_its_traceback(unexportable_task: Path, tmp_path: Path) -> None:
    done = _optimize(unexportable_task, tmp_path / "runs", "--debug")
    assert done.returncode == 1 and "Traceback" in done.stderr and "GuardOnDataDependentSymNode" in done.stderr
    assert not (tmp_path / "runs" / "branchy" / "report.json").exists()
    study = optuna.load_study(study_name="branchy", storage=f"sqlite:///{tmp_path / 'runs' / 'branchy' / 'study.db'}")
    assert [r.state for r in records(study) if r.counted][-1] == "failed"  # recorded before it was raised


def test_skipped_and_repeated_samples_are_counted_not_listed(optimized_run) -> None:
    result, _ = optimized_run
    report = result.report.data
    assert {t.state for t in report.trials} <= {"complete", "pruned", "failed"}
    stats = report.search_stats
    assert stats.measured + stats.failed == len(report.trials) == 8
    study = optuna.load_study(study_name="digits", storage=f"sqlite:///{result.run_dir / 'study.db'}")
    found = records(study)
    assert stats.skipped == sum(r.state == "skipped" for r in found)
    assert stats.duplicates == sum(r.state == "duplicate" for r in found)
    listed = {t.number for t in report.trials}
    assert all(not (result.run_dir / "trials" / str(r.number)).exists() for r in found if r.number not in listed)


@pytest.fixture(scope="module")
def gru_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _trained(DigitsGRU, to.data.digits(seed=0, shape=(8, 8)), tmp_path_factory.mktemp("gru") / "gru.safetensors",
                    epochs=3)


def test_a_step_that_changes_nothing_is_left_out_of_the_recipe_and_named(gru_weights: Path) -> None:
    data = to.data.digits(seed=0, shape=(8, 8))
    gru = load_model(ModelSpec(source="torch", factory="unusual_models:DigitsGRU", weights=gru_weights))
    space = default_space(["prune.structured", "quantize.dynamic"], "torch", frozenset({"torch"}))
    recipe = Recipe(steps=({"pass": "prune.structured", "amount": 0.5}, {"pass": "quantize.dynamic"}))
    ctx = Context(data=data, seed=0, threads=2, teacher=gru)
    built = space.build(recipe, ctx)
    kept, unchanged = space.without_unchanged(recipe)
    assert unchanged == ["prune.structured"] and kept is not None and kept.passes == ["quantize.dynamic"]
    assert space.build(kept, ctx) is built  # the recipe the trial records is the model it measured, not a rebuild


def test_the_contenders_outlive_the_prefix_cache_and_finalization_does_not_build_them_again(gru_weights: Path) -> None:
    data = to.data.digits(seed=0, shape=(8, 8))
    gru = load_model(ModelSpec(source="torch", factory="unusual_models:DigitsGRU", weights=gru_weights))
    space = default_space(["prune.magnitude"], "torch", frozenset({"torch"}))
    ctx = Context(data=data, seed=0, threads=2, teacher=gru)
    recipes = [Recipe(steps=({"pass": "prune.magnitude", "sparsity": s / 20, "finetune_epochs": 0},))
               for s in range(1, PREFIX_CACHE + 3)]
    contender = space.build(recipes[0], ctx)
    space.keep([recipes[0]])
    others = {r.key(): space.build(r, ctx) for r in recipes[1:]}  # more than the cache holds
    assert space.build(recipes[0], ctx) is contender
    assert space.build(recipes[1], ctx) is not others[recipes[1].key()]  # the least recent of the rest went
    space.keep([])
    for recipe in recipes[2:]:
        space.build(recipe, ctx)
    assert space.build(recipes[0], ctx) is not contender  # no longer a contender: an ordinary prefix again


def test_a_search_never_lists_a_step_that_changed_nothing(gru_weights: Path, tmp_path: Path) -> None:
    data = to.data.digits(seed=0, shape=(8, 8))
    gru = load_model(ModelSpec(source="torch", factory="unusual_models:DigitsGRU", weights=gru_weights))
    result = optimize(model=gru, data=data, out=tmp_path, quiet=True, name="gru", runtime={"target": "torch"},
                      search={"trials": 2, "seed": 0, "passes": ["prune.structured", "quantize.dynamic"]})
    report = result.report.data
    assert report.trials and not any("prune.structured" in t.passes for t in report.trials)
    assert "prune.structured" not in json.dumps(report.best.recipe)
    study = optuna.load_study(study_name="gru", storage=f"sqlite:///{result.run_dir / 'study.db'}")
    notes = [r.note for r in records(study) if r.note and "prune.structured changed nothing on this model" in r.note]
    assert notes  # the sampled recipes that held it say so
