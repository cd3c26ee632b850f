"""Every user mistake gets one line naming the problem and the fix, exit code 2, and no partial artifact."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tradeoff.cli import app
from tradeoff.passes import registered_passes

runner = CliRunner()


def _fails_cleanly(args: list[str], expected: str, out: Path) -> str:
    result = runner.invoke(app, [*args, "--out", str(out)] if args[0] == "optimize" else args)
    message = result.stderr.strip()
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and len(message.splitlines()) == 1, message
    assert expected in message, message
    assert not (out / "digits" / "best").exists()
    return message


def test_missing_weights_file(task_file, tmp_path: Path) -> None:
    task = task_file(model={"source": "torch", "factory": "conftest:DigitsMLP", "weights": "nowhere.safetensors"})
    _fails_cleanly(["optimize", str(task)], "weights file not found", tmp_path)


def test_weights_that_do_not_match_the_model(task_file, cnn_weights: Path, tmp_path: Path) -> None:
    task = task_file(model={"source": "torch", "factory": "conftest:DigitsMLP", "weights": str(cnn_weights)})
    message = _fails_cleanly(["optimize", str(task)], "do not match the model", tmp_path)
    assert "factory" in message


def test_pickle_that_weights_only_refuses_points_to_the_opt_in(task_file, tmp_path: Path) -> None:
    from conftest import DigitsMLP

    pickled = tmp_path / "whole_model.pt"
    torch.save(DigitsMLP(), pickled)
    task = task_file(model={"source": "torch", "factory": "conftest:DigitsMLP", "weights": str(pickled)})
    _fails_cleanly(["optimize", str(task)], "--allow-pickle", tmp_path)


def test_misspelled_key_suggests_the_right_one(task_file, tmp_path: Path) -> None:
    task = task_file(constraints={"max_metric_drp": 0.01})
    _fails_cleanly(["optimize", str(task)], "did you mean 'max_metric_drop'", tmp_path)


def test_data_whose_shape_does_not_fit_the_model(task_file, tmp_path: Path) -> None:
    task = task_file(data={"source": "builtin", "name": "wine"})
    _fails_cleanly(["optimize", str(task)], "does not fit the model", tmp_path)


def test_empty_dataset(task_file, tmp_path: Path) -> None:
    empty = tmp_path / "empty.npz"
    np.savez(empty, x=np.zeros((0, 64), dtype=np.float32), y=np.zeros((0,), dtype=np.int64))
    task = task_file(data={"source": "file", "path": str(empty)})
    _fails_cleanly(["optimize", str(task)], "is empty", tmp_path)


def test_unknown_metric(task_file, tmp_path: Path) -> None:
    _fails_cleanly(["optimize", str(task_file(metric="acuracy"))], "unknown metric 'acuracy'", tmp_path)


def test_unknown_pass_in_the_menu(task_file, tmp_path: Path) -> None:
    task = task_file(search={"trials": 2, "passes": ["quantize.dynamc"]})
    _fails_cleanly(["optimize", str(task)], "did you mean 'quantize.dynamic'", tmp_path)


def test_unknown_pass_in_a_recipe(task_file, tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("version: 1\nsteps:\n  - {pass: prune.magic}\n")
    _fails_cleanly(["apply", str(recipe), "--task", str(task_file())], "unknown pass 'prune.magic'", tmp_path)


def test_nan_in_model_outputs(task_file, mlp_weights: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    weights = load_file(str(mlp_weights))
    weights["layers.0.weight"][0, 0] = float("nan")
    broken = tmp_path / "nan.safetensors"
    save_file(weights, str(broken))
    task = task_file(model={"source": "torch", "factory": "conftest:DigitsMLP", "weights": str(broken)})
    _fails_cleanly(["optimize", str(task)], "NaN or Inf", tmp_path)


def test_missing_task_file(tmp_path: Path) -> None:
    _fails_cleanly(["optimize", str(tmp_path / "absent.yaml")], "task file not found", tmp_path)


def test_passes_lists_every_registered_pass() -> None:
    result = runner.invoke(app, ["passes"])
    assert result.exit_code == 0 and all(name in result.stdout for name in registered_passes())


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="no /proc/cpuinfo to check the CPU against")
def test_env_reports_this_machines_cpu_and_its_int8_and_bf16_flags() -> None:
    result = runner.invoke(app, ["env"])
    assert result.exit_code == 0
    cpu = json.loads(result.stdout)["cpu"]
    info = Path("/proc/cpuinfo").read_text().splitlines()
    model = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    flags = set(next(line.split(":", 1)[1] for line in info if line.startswith("flags")).split())
    assert cpu["model"] == model and cpu["cores"] == os.cpu_count()
    assert cpu["flags"] and cpu["flags"] == {flag: flag in flags for flag in cpu["flags"]}
    assert {"avx2", "avx512_vnni", "avx512_bf16"} <= set(cpu["flags"])
    assert cpu["fast_int8"] == bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


def test_a_torch_artifact_without_factory_is_refused_with_the_way_out(mlp, tmp_path: Path) -> None:
    from tradeoff.artifact import load_artifact
    from tradeoff.errors import ModelError
    from tradeoff.model import ModelHandle

    ModelHandle(module=mlp.module).save(tmp_path)
    with pytest.raises(ModelError, match="no factory"):
        load_artifact(tmp_path)
