"""A user's own train, validation and test files are the splits, row for row; files that disagree are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from skl2onnx import to_onnx
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from typer.testing import CliRunner

from tradeoff.cli import app
from tradeoff.config import load_task
from tradeoff.data import load_data

runner = CliRunner()
SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def wine_splits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Wine cut in three by the user's own shuffle, not tradeoff's."""
    x, y = load_wine(return_X_y=True)
    order = np.random.default_rng(7).permutation(len(x))
    parts = np.split(order, [120, 148])
    return {name: (x[idx], y[idx]) for name, idx in zip(SPLITS, parts, strict=True)}


@pytest.fixture(scope="module")
def wine_classifier(wine_splits) -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(*wine_splits["train"])


def write_csv(path: Path, x: np.ndarray, y: np.ndarray, columns: list[str]) -> None:
    rows = "\n".join(",".join(repr(float(v)) for v in (*row, label)) for row, label in zip(x, y, strict=True))
    path.write_text(",".join([*columns, "target"]) + "\n" + rows + "\n")


def write_task(folder: Path, data: dict[str, object], classifier: Pipeline) -> Path:
    sample = np.zeros((1, 13), dtype=np.float32)
    (folder / "model.onnx").write_bytes(to_onnx(classifier, sample).SerializeToString())
    task = folder / "task.yaml"
    task.write_text(yaml.safe_dump({"name": "wine", "model": {"source": "onnx", "path": "model.onnx"}, "data": data}))
    return task


@pytest.mark.parametrize("suffix", [".csv", ".npz"])
def test_the_splits_are_exactly_the_rows_of_the_given_files(suffix: str, wine_splits, wine_classifier,
                                                            tmp_path: Path) -> None:
    columns = load_wine().feature_names
    for name, (x, y) in wine_splits.items():
        if suffix == ".csv":
            write_csv(tmp_path / f"{name}.csv", x, y, columns)
        else:
            np.savez(tmp_path / f"{name}.npz", x=x, y=y)
    data = {"source": "file", **{name: f"{name}{suffix}" for name in SPLITS}}  # relative to the task file
    task = write_task(tmp_path, data, wine_classifier)
    data = load_data(load_task(task).data)
    for name, (x, y) in wine_splits.items():
        split = getattr(data, name)
        np.testing.assert_array_equal(split.x, x.astype(np.float32))
        np.testing.assert_array_equal(split.y, y)
        assert split.y.dtype == np.int64
    result = runner.invoke(app, ["evaluate", str(task), "--json"])
    test_x, test_y = wine_splits["test"]
    expected = np.mean(wine_classifier.predict(test_x.astype(np.float32)) == test_y)
    assert result.exit_code == 0 and json.loads(result.stdout)["metric"] == pytest.approx(expected), result.output


def _refused(task: Path, expected: str) -> None:
    result = runner.invoke(app, ["evaluate", str(task)])
    message = result.stderr.strip()
    assert result.exit_code == 2 and len(message.splitlines()) == 1 and "Traceback" not in result.output, result.output
    assert expected in message, message


def test_a_missing_or_mismatched_split_file_is_one_line(wine_splits, wine_classifier, tmp_path: Path) -> None:
    columns = load_wine().feature_names
    for name, (x, y) in wine_splits.items():
        write_csv(tmp_path / f"{name}.csv", x, y, columns)
    x, y = wine_splits["val"]
    write_csv(tmp_path / "swapped.csv", x[:, ::-1], y, columns[::-1])
    write_csv(tmp_path / "narrow.csv", x[:, :5], y, columns[:5])
    np.savez(tmp_path / "narrow.npz", x=x[:, :5], y=y)
    files = {"source": "file", "train": "train.csv", "val": "val.csv", "test": "test.csv"}
    def task(**data: object) -> Path:
        return write_task(tmp_path, {**files, **data}, wine_classifier)

    _refused(task(val="nowhere.csv"), "data file not found")
    _refused(task(val="swapped.csv"), "has column 1 'proline' where 'alcohol' is in data.train file")
    _refused(task(test="narrow.csv"), "narrow.csv has 5 input columns, 13 in data.train file")
    _refused(task(test="narrow.npz"), "has samples of shape [5], data.train file")
    _refused(task(val=None), "all of 'train', 'val' and 'test'")
    _refused(task(path="train.csv"), "either 'path'")
    _refused(task(split=[0.8, 0.1, 0.1]), "'split' divides one 'path'")
