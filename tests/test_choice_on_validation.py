"""The shipped model is chosen on validation by a stated rule; the test split is read once, for the report, and a
constraint the choice breaks there is said plainly, never fixed by choosing again."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from tradeoff.cli import app
from tradeoff.data import BUILTIN, _split_indices
from tradeoff.model import ModelHandle
from tradeoff.optimize import optimize

SPLIT = (0.7, 0.1, 0.2)


def _digits_file(path: Path, test_labels_from: ModelHandle | None = None) -> Path:
    """The digits rows as an .npz; with a model, the rows the task's split puts in test are labelled with that
    model's own predictions, so any candidate that disagrees with it on a test row loses accuracy there, however
    it does on validation."""
    x, y = BUILTIN["digits"]()
    x, y = np.asarray(x, dtype=np.float32), np.asarray(y).copy()
    if test_labels_from is not None:
        test = _split_indices(len(x), SPLIT, 0)[2]
        with torch.no_grad():
            y[test] = test_labels_from.torch_module()(torch.from_numpy(x[test])).argmax(1).numpy()
    np.savez(path, x=x, y=y)
    return path


def _task(path: Path, data: Path, weights: Path) -> Path:
    # No metric loss allowed, size first: the search ships the most pruned model that loses nothing on validation.
    path.write_text(yaml.safe_dump({
        "name": "choice", "model": {"source": "torch", "factory": "conftest:DigitsMLP", "weights": str(weights)},
        "data": {"source": "file", "path": str(data), "split": list(SPLIT), "seed": 0}, "metric": "accuracy",
        "constraints": {"max_metric_drop": 0.0}, "objectives": ["size"], "runtime": {"threads": 2},
        "search": {"trials": 3, "seed": 0, "passes": ["prune.magnitude"], "space": {"prune__finetune_epochs": 2}},
    }))
    return path


@pytest.fixture(scope="module")
def relabelled_run(mlp, mlp_weights: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    folder = tmp_path_factory.mktemp("relabelled")
    task = _task(folder / "task.yaml", _digits_file(folder / "digits.npz", test_labels_from=mlp), mlp_weights)
    result = CliRunner().invoke(app, ["optimize", str(task), "--out", str(folder / "runs"), "--json", "--strict"])
    return result, folder


def test_a_constraint_broken_on_test_is_reported_and_strict_exits_3(relabelled_run) -> None:  # noqa: ANN001
    result, folder = relabelled_run
    assert result.exit_code == 3, result.output
    best = json.loads(result.stdout)["best"]
    assert best["trial"] is not None and not best["is_baseline"]  # shipped as chosen, not chosen again on test
    assert [v["constraint"] for v in best["test_violations"]] == ["max_metric_drop"]
    assert "breaks a constraint on the test split: max_metric_drop" in result.stderr
    report = json.loads((folder / "runs" / "choice" / "report.json").read_text())
    shipped = next(f for f in report["finalists"] if f["trial"] == best["trial"])
    assert shipped["measured"]["split"] == "val" and shipped["meets_constraints"] and shipped["excluded"] is None


def test_the_test_labels_change_nothing_about_the_choice(relabelled_run, mlp_weights: Path, tmp_path: Path) -> None:  # noqa: ANN001
    _, folder = relabelled_run
    relabelled = json.loads((folder / "runs" / "choice" / "report.json").read_text())
    task = _task(tmp_path / "task.yaml", _digits_file(tmp_path / "digits.npz"), mlp_weights)
    report = optimize(task, out=tmp_path / "runs", quiet=True).report.data
    assert report.best.trial == relabelled["best"]["trial"]
    # the threads are timed again in each run: where one and two run alike, either may be kept
    assert {**report.best.recipe, "threads": None} == {**relabelled["best"]["recipe"], "threads": None}
    assert report.choice.rule == relabelled["choice"]["rule"]
    assert report.best.metric != relabelled["best"]["metric"]  # the test split itself did differ


def test_the_baseline_on_validation_is_timed_like_the_finalists(relabelled_run) -> None:  # noqa: ANN001
    """Not one cold measurement at the start: the report's baseline star sits where the choice compared it."""
    _, folder = relabelled_run
    report = json.loads((folder / "runs" / "choice" / "report.json").read_text())
    # more calls than one plain measurement makes (500 at most): timed over interleaved rounds
    assert report["baseline_val"]["latency_ms"]["runs"] > 500
    assert all(f["measured"]["latency_ms"]["runs"] > 500 for f in report["finalists"])


def test_the_example_models_never_train_or_early_stop_on_validation_or_test(monkeypatch: pytest.MonkeyPatch,
                                                                           tmp_path: Path) -> None:
    """examples/mnist.py trains the demo's baseline: its early stopping reads a holdout of train, never the
    validation split the search decides on (nor test)."""
    import examples.mnist as example
    import tradeoff as to

    seen: list[np.ndarray] = []
    real_fit = to.training.fit

    def recording_fit(module, train, val, **options):  # noqa: ANN001, ANN003, ANN202
        seen.extend([train.x, val.x])
        return real_fit(module, train, val, **{**options, "epochs": 1})

    monkeypatch.setattr(to.training, "fit", recording_fit)
    example.train(example.LeNet300, None, tmp_path / "lenet.safetensors")
    data = to.data.mnist(seed=0)
    used = {row.tobytes() for x in seen for row in x}
    assert seen and (tmp_path / "lenet.safetensors").is_file()
    assert not used & {row.tobytes() for row in data.val.x} and not used & {row.tobytes() for row in data.test.x}
