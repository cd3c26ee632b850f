"""A pass written outside the catalogue (examples/threshold_pass.py): one file, and it is listed, searched and
checked like the passes tradeoff ships, whether it sits in the package, comes through an entry point or is named
by a task file's search.plugins."""

from __future__ import annotations

import importlib
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import tradeoff.passes
from tradeoff.cli import app
from tradeoff.errors import ConfigError
from tradeoff.model import ModelHandle
from tradeoff.optimize import optimize
from tradeoff.passes import Context, base, load_plugins, registered_passes
from tradeoff.search.space import default_space, select_passes
from tradeoff.testing import PassCase, conformance_checks

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "threshold_pass.py"
NAME = "prune.threshold"


@pytest.fixture()
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test registers the pass anew, and leaves the registry as it found it: a plugin registered here must
    not enter other tests' searches."""
    saved = registered_passes()
    monkeypatch.setattr(base, "_discovered", False)
    yield
    base._REGISTRY.clear()
    base._REGISTRY.update(saved)
    for module in [m for m in sys.modules if m.endswith("threshold_pass") or m.endswith("prune_threshold")]:
        del sys.modules[module]


def test_a_pass_added_as_one_file_in_the_package_is_discovered(tmp_path: Path, fresh_registry: None,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(EXAMPLE, tmp_path / "prune_threshold.py")
    monkeypatch.setattr(tradeoff.passes, "__path__", [*tradeoff.passes.__path__, str(tmp_path)])
    assert NAME in registered_passes()


def test_a_pass_from_an_installed_package_registers_through_the_entry_point(tmp_path: Path, fresh_registry: None,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(EXAMPLE, tmp_path / "threshold_pass.py")
    info = tmp_path / "threshold_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: threshold-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[tradeoff.passes]\nthreshold = threshold_pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    listed = CliRunner().invoke(app, ["passes"])
    assert listed.exit_code == 0 and NAME in listed.output and "threshold" in listed.output


def test_a_task_names_a_plugin_module_beside_it_and_the_search_measures_its_pass(
        tmp_path: Path, fresh_registry: None, mlp_weights: Path) -> None:
    shutil.copy(EXAMPLE, tmp_path / "threshold_pass.py")
    task = tmp_path / "task.yaml"
    task.write_text(yaml.safe_dump({
        "name": "plugin", "metric": "accuracy", "constraints": {"max_metric_drop": 0.05},
        "model": {"source": "torch", "factory": "conftest:DigitsMLP", "weights": str(mlp_weights)},
        "data": {"source": "builtin", "name": "digits", "seed": 0}, "runtime": {"target": "torch", "threads": 2},
        "search": {"trials": 2, "seed": 0, "plugins": ["threshold_pass"], "passes": [NAME]},
    }))
    report = optimize(task, out=tmp_path / "runs", quiet=True).report.data
    measured = [t for t in report.trials if t.state == "complete"]
    assert len(measured) == 2 and all(t.passes == [NAME] for t in measured)
    assert len({t.recipe["steps"][0]["threshold"] for t in measured}) == 2  # its declared range is searched
    assert all(t.nonzero_params < t.params for t in measured)


def test_a_plugin_pass_is_selected_by_its_tags_with_its_declared_range(fresh_registry: None) -> None:
    load_plugins(("examples.threshold_pass",))
    menu = select_passes(None, ("size", "export"), ("retrains", "opt-in"))
    space = default_space(menu, "auto", frozenset({"torch"}))
    assert NAME in space.slots["prune"] and "prune__threshold" in space.params


def test_a_plugin_module_that_cannot_be_imported_is_one_line_naming_it(fresh_registry: None) -> None:
    with pytest.raises(ConfigError, match="cannot import plugin module 'no_such_plugin'"):
        load_plugins(("no_such_plugin",))


@pytest.mark.parametrize("check", conformance_checks(), ids=lambda check: check.__name__)
def test_the_plugin_pass_passes_the_shipped_conformance_suite(check: Callable[[PassCase, Path], None],
                                                              fresh_registry: None, mlp: ModelHandle,
                                                              digits, tmp_path: Path) -> None:
    load_plugins(("examples.threshold_pass",))
    ctx = Context(data=digits, seed=0, threads=2)
    exported = tradeoff.passes.build_pass({"pass": "export.onnx"}).apply(mlp, ctx)
    check(PassCase(NAME, model=mlp, ctx=ctx, wrong=exported), tmp_path)
