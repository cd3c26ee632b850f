"""Artifacts and task files from strangers: a best/ folder that does not match its MANIFEST, an ONNX model whose
external data lies outside its folder and YAML that would run code are refused in one line, exit code 2."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

import tradeoff as to
from tradeoff.cli import app
from tradeoff.errors import ModelError
from tradeoff.model import ModelHandle, read_onnx
from tradeoff.recipe import Recipe
from tradeoff.runtimes import runtime_for

runner = CliRunner()


def _refused(args: list[str], expected: str) -> str:
    result = runner.invoke(app, args)
    message = result.stderr.strip()
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and len(message.splitlines()) == 1, message
    assert expected in message, message
    return message


@pytest.fixture()
def onnx_best(task_file, tmp_path: Path) -> tuple[Path, Path]:
    """A task and the ONNX artifact folder `tradeoff apply` wrote for it (MANIFEST included)."""
    task = task_file()
    to.apply(Recipe.from_dict({"steps": [{"pass": "export.onnx"}]}), task, out=tmp_path / "best")
    return task, tmp_path / "best"


def _change(folder: Path) -> str:
    with (folder / "model.onnx").open("ab") as handle:
        handle.write(b"\0")
    return "model.onnx does not match its sha256 in MANIFEST"


def _lose(folder: Path) -> str:
    (folder / "metrics.json").unlink()
    return "metrics.json is listed in MANIFEST but missing"


def _add(folder: Path) -> str:
    shutil.copy(folder / "model.onnx", folder / "model.pt")
    return "model.pt is not listed in MANIFEST"


def test_an_intact_artifact_folder_loads(onnx_best: tuple[Path, Path]) -> None:
    task, best = onnx_best
    assert runner.invoke(app, ["evaluate", str(task), "--model", str(best)]).exit_code == 0


@pytest.mark.parametrize("tamper", [_change, _lose, _add], ids=["changed", "missing", "extra"])
def test_an_artifact_folder_that_does_not_match_its_manifest_is_refused(onnx_best: tuple[Path, Path],
                                                                        tamper: Callable[[Path], str]) -> None:
    task, best = onnx_best
    expected = tamper(best)
    message = _refused(["evaluate", str(task), "--model", str(best)], expected)
    assert str(best) in message and "write it again" in message


def _external(model: onnx.ModelProto, folder: Path, location: str) -> Path:
    """`model` saved in `folder` with every weight in the external file `location`, as onnx itself writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    path, copy = folder / "model.onnx", onnx.ModelProto()
    copy.CopyFrom(model)  # onnx.save_model moves the weights of the proto it is given out to the file
    onnx.save_model(copy, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=location,
                    size_threshold=0)
    return path


def _relocate(path: Path, location: str) -> None:
    """Point every external tensor of the saved model at `location` (the bytes stay what they were)."""
    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    path.write_bytes(model.SerializeToString())


def test_external_data_beside_the_model_is_read_in(onnx_best: tuple[Path, Path], digits, tmp_path: Path) -> None:
    single = onnx.load(str(onnx_best[1] / "model.onnx"))
    path = _external(single, tmp_path / "split", "weights.bin")
    loaded = ModelHandle(onnx_bytes=read_onnx(path))
    reference = ModelHandle(onnx_bytes=single.SerializeToString())
    np.testing.assert_array_equal(runtime_for(loaded).load(loaded, 2)(digits.test.x[:16]),
                                  runtime_for(reference).load(reference, 2)(digits.test.x[:16]))
    task = onnx_best[0]
    assert runner.invoke(app, ["evaluate", str(task), "--model", str(path)]).exit_code == 0


@pytest.mark.parametrize("where", ["parent", "absolute"])
def test_external_data_outside_the_models_folder_is_refused(onnx_best: tuple[Path, Path], tmp_path: Path,
                                                            where: str) -> None:
    """The data file exists and holds the right bytes: only its place is wrong, and nothing reads it."""
    path = _external(onnx.load(str(onnx_best[1] / "model.onnx")), tmp_path / "model", "weights.bin")
    outside = tmp_path / "weights.bin"
    shutil.move(path.parent / "weights.bin", outside)
    location = "../weights.bin" if where == "parent" else str(outside)
    _relocate(path, location)
    with pytest.raises(ModelError, match="outside the model's folder"):
        read_onnx(path)
    _refused(["evaluate", str(onnx_best[0]), "--model", str(path)], f"keeps its data at '{location}'")


def test_yaml_that_would_build_python_objects_is_refused(task_file, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    task = task_file()
    task.write_text(task.read_text() + f"hook: !!python/object/apply:os.system ['touch {marker}']\n")
    _refused(["optimize", str(task), "--out", str(tmp_path)], "is not valid YAML")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"steps: !!python/object/apply:os.system ['touch {marker}']\n")
    _refused(["apply", str(recipe), "--task", str(task_file())], "is not valid YAML")
    assert not marker.exists()
