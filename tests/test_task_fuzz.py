"""Task files from strangers: a valid task file, mutated (keys dropped, wrong types, unknown keys, bad paths,
out-of-range numbers, nested junk), either runs or is refused in one line with exit code 2, never a traceback."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tradeoff.cli import app

runner = CliRunner()


def _valid_task(weights: Path) -> dict[str, Any]:
    return {
        "name": "fuzz",
        "model": {"source": "torch", "factory": "conftest:DigitsMLP", "weights": str(weights)},
        "data": {"source": "builtin", "name": "digits", "split": [0.7, 0.1, 0.2], "seed": 0},
        "metric": "accuracy",
        "constraints": {"max_metric_drop": 0.05},
        "objectives": ["size"],
        "runtime": {"target": "onnxruntime", "threads": 1, "batch_sizes": [1]},
        "search": {"trials": 1, "seed": 0, "passes": ["export.onnx"], "storage": "memory", "finalists": 1},
    }


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key (and list index) of the task, nested ones included."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield (*prefix, key)
        yield from _paths(value, (*prefix, key))


JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([0, -1, 10**9, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
    st.sampled_from(["", "../nowhere.yaml", "/etc/passwd", "no_such_module:thing", "conftest:nothing", "a/b", "."]),
    st.lists(st.integers(-2, 5), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
VALID_PATHS = list(_paths(_valid_task(Path("w"))))
MUTATION = st.one_of(
    st.tuples(st.just("drop"), st.sampled_from(VALID_PATHS), st.none()),
    st.tuples(st.just("set"), st.sampled_from(VALID_PATHS), JUNK),
    st.tuples(st.just("add"), st.sampled_from([(), *(p for p in VALID_PATHS if len(p) == 1)]),
              st.tuples(st.text(min_size=1, max_size=6), JUNK)),
)


def _mutate(task: dict[str, Any], mutation: tuple[str, tuple[Any, ...], Any]) -> Any:
    kind, path, value = mutation
    if kind == "set" and not path:
        return value
    parent: Any = task
    for key in path[:-1] if kind != "add" else path:
        if not isinstance(parent, (dict, list)) or (isinstance(parent, dict) and key not in parent) or (
                isinstance(parent, list) and key >= len(parent)):
            return task  # an earlier mutation removed or replaced this key
        parent = parent[key]
    if kind == "add":
        if isinstance(parent, dict):
            parent[value[0]] = value[1]
        return task
    if isinstance(parent, dict) and path[-1] in parent or isinstance(parent, list) and path[-1] < len(parent):
        if kind == "drop":
            del parent[path[-1]]
        else:
            parent[path[-1]] = value
    return task


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def test_the_valid_task_runs(fuzz_dir: Path, mlp_weights: Path) -> None:
    """The starting point of the mutations below is a task that runs."""
    task = fuzz_dir / "valid.yaml"
    task.write_text(yaml.safe_dump(_valid_task(mlp_weights)))
    result = runner.invoke(app, ["optimize", str(task), "--out", str(fuzz_dir / "runs"), "--quiet"])
    assert result.exit_code == 0, result.output


@settings(max_examples=40, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(mutations=st.lists(MUTATION, min_size=1, max_size=3))
def test_a_mutated_task_runs_or_is_refused_in_one_line(mutations: list[tuple[str, tuple[Any, ...], Any]],
                                                       fuzz_dir: Path, mlp_weights: Path) -> None:
    task: Any = copy.deepcopy(_valid_task(mlp_weights))
    for mutation in mutations:
        task = _mutate(task, mutation)
    path = fuzz_dir / "task.yaml"
    path.write_text(yaml.safe_dump(task))
    result = runner.invoke(app, ["optimize", str(path), "--out", str(fuzz_dir / "runs"), "--quiet", "--trials", "1"])
    assert result.exit_code in (0, 2), f"{task}\n{result.output}\n{result.exception!r}"
    assert "Traceback" not in result.output, result.output
    if result.exit_code == 2:
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
