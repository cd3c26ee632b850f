"""The documented surface works as printed and from anywhere: a cheap `--help`, README's Python snippet, evaluate and
apply from Python, and a task's own code found beside the task file whatever the working directory."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import textwrap
import webbrowser
from pathlib import Path

import pytest
import torch
import yaml
from conftest import DigitsMLP
from torch import nn

import tradeoff as to
from tradeoff.data import DataBundle
from tradeoff.errors import ConfigError, ModelError
from tradeoff.model import ModelHandle
from tradeoff.recipe import Recipe

README = Path(__file__).resolve().parents[1] / "README.md"
HEAVY = ("torch", "optuna", "onnx", "onnxruntime", "transformers")
TRADEOFF = Path(sys.executable).with_name("tradeoff")


def test_import_and_help_load_no_heavy_library() -> None:
    """`tradeoff --help` took 6.7 s because every command imported torch, optuna and onnx up front."""
    script = textwrap.dedent(f"""
        import sys
        import tradeoff, tradeoff.cli
        from typer.testing import CliRunner
        for args in (["--help"], ["optimize", "--help"], ["evaluate", "--help"], ["apply", "--help"]):
            result = CliRunner().invoke(tradeoff.cli.app, args)
            assert result.exit_code == 0 and "Usage" in result.output, result.output
        print(sorted(m for m in {HEAVY!r} if m in sys.modules))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_public_names_load_on_first_use() -> None:
    import tradeoff.replay  # loads the submodule tradeoff.optimize, which must not replace the function

    assert callable(to.optimize) and to.optimize.__module__ == "tradeoff.optimize"
    assert to.evaluate is tradeoff.replay.evaluate and to.apply is tradeoff.replay.apply
    assert to.data.digits and to.Recipe is Recipe
    with pytest.raises(AttributeError):
        _ = to.no_such_name


def _readme_python() -> str:
    return re.search(r"The same in Python:\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)


@pytest.fixture(scope="module")
def mnist_model() -> nn.Module:
    """A real MNIST classifier, trained briefly on the training split of the data README's snippet loads."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    data = to.data.mnist()
    to.training.fit(model, data.train, data.val, epochs=2, lr=3e-3, seed=0)
    return model.eval()


def test_readme_python_snippet_runs_as_printed(mnist_model: nn.Module, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """README's `to.optimize(model, data=..., ...)` failed: optimize took a task first and the model as model=."""
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", opened.append)
    monkeypatch.chdir(tmp_path)
    scope = {"model": mnist_model}
    exec(_readme_python(), scope)  # noqa: S102 - the README's own code, as a user would paste it
    result = scope["result"]
    assert result.baseline.metric > 0.8
    assert {"recipe.yaml", "metrics.json", "MANIFEST"} <= {p.name for p in (tmp_path / "out").iterdir()}
    assert opened == [result.report.html_path.resolve().as_uri()]


def test_evaluate_and_apply_from_python(mlp: ModelHandle, digits: DataBundle, tmp_path: Path) -> None:
    measured = to.evaluate(mlp.module, data=digits, metric="accuracy")
    with torch.no_grad():
        predicted = mlp.module(torch.from_numpy(digits.test.x)).argmax(1).numpy()
    assert measured.split == "test" and measured.metric == pytest.approx((predicted == digits.test.y).mean())
    assert to.evaluate(model=mlp.module, data=digits, split="val").split == "val"

    recipe = Recipe.from_dict({"steps": [{"pass": "export.onnx"}, {"pass": "quantize.dynamic"}]})
    applied = to.apply(recipe, mlp.module, data=digits, out=tmp_path / "applied")
    assert applied.model.format == "onnx" and applied.measured.size.bytes < measured.size.bytes
    again = to.evaluate(tmp_path / "applied", data=digits)  # the saved artifact measures as apply reported
    assert again.metric == pytest.approx(applied.measured.metric, abs=1e-9)


def test_evaluate_measures_another_model_on_a_task(task_file, mlp: ModelHandle, tmp_path: Path) -> None:
    exported = to.apply(Recipe.from_dict({"steps": [{"pass": "export.onnx"}]}), task_file(), out=tmp_path / "onnx")
    on_task = to.evaluate(task_file(), model=tmp_path / "onnx" / "model.onnx", split="val")
    assert on_task.format == "onnx" and on_task.split == "val"
    assert on_task.metric == pytest.approx(to.evaluate(task_file(), split="val").metric, abs=1e-6)
    assert exported.measured.format == "onnx"


def test_a_first_argument_that_is_neither_task_nor_model_is_refused(mlp: ModelHandle, digits: DataBundle, task_file,
                                                                     tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="takes one task or model, got 0"):
        to.optimize()
    with pytest.raises(ConfigError, match="needs data= with a model"):
        to.optimize(mlp.module)
    with pytest.raises(ConfigError, match="not both"):
        to.optimize(task_file(), data=digits)
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelError, match="cannot use .*notes.txt as a model"):
        to.evaluate(tmp_path / "notes.txt", data=digits)


@pytest.fixture()
def task_folder(tmp_path: Path, mlp_weights: Path) -> Path:
    """A task whose factory is in a module named `models` beside it, and its metric in `scoring.py`: onnxruntime.
    transformers appends a folder holding its own package `models` to sys.path."""
    folder = tmp_path / "task"
    folder.mkdir()
    (folder / "models.py").write_text("import torch\nfrom torch import nn\n\n\n" + inspect.getsource(DigitsMLP)
                                      + "\n\ndef res_digits():\n    return DigitsMLP()\n")
    (folder / "scoring.py").write_text("def share_right(outputs, targets):\n"
                                       "    return float((outputs.argmax(1) == targets).mean())\n")
    (folder / "task.yaml").write_text(yaml.safe_dump({
        "name": "elsewhere", "model": {"source": "torch", "factory": "models:res_digits", "weights": str(mlp_weights)},
        "data": {"source": "builtin", "name": "digits", "seed": 0},
        "metric": {"name": "scoring:share_right", "higher_is_better": True}, "runtime": {"threads": 2},
    }))
    (folder / "recipe.yaml").write_text("steps:\n  - {pass: export.onnx}\n  - {pass: quantize.dynamic}\n")
    return folder


def _tradeoff(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(TRADEOFF), *args], cwd=cwd, capture_output=True, text=True)


def test_evaluate_and_apply_find_the_tasks_code_from_another_directory(task_folder: Path, tmp_path: Path) -> None:
    """From another directory both failed with "module 'models' has no 'res_digits'"."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    task = str(task_folder / "task.yaml")
    applied = _tradeoff("apply", str(task_folder / "recipe.yaml"), "--task", task, "--out", "applied", cwd=elsewhere)
    assert applied.returncode == 0, applied.stderr
    evaluated = _tradeoff("evaluate", task, "--model", "applied", "--json", cwd=elsewhere)
    assert evaluated.returncode == 0, evaluated.stderr
    assert '"metric": 0.9' in evaluated.stdout


def test_a_task_module_wins_over_the_models_package_onnxruntime_puts_on_the_path(task_folder: Path,
                                                                                 tmp_path: Path) -> None:
    """Once onnxruntime.transformers' `models` package is imported, `models` named it, not the task's file."""
    script = textwrap.dedent(f"""
        import onnxruntime.transformers, models
        assert not hasattr(models, "res_digits")  # the shadowing is real
        from tradeoff.cli import app
        app(["evaluate", {str(task_folder / "task.yaml")!r}, "--split", "val", "--json"])
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and '"metric": 0.9' in done.stdout, done.stderr


def test_a_module_that_is_not_there_says_cannot_import(task_folder: Path, tmp_path: Path) -> None:
    task = task_folder / "task.yaml"
    task.write_text(task.read_text().replace("models:res_digits", "modles:res_digits"))
    done = _tradeoff("evaluate", str(task), cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "cannot import model.factory module 'modles'" in done.stderr and str(task_folder) in done.stderr
