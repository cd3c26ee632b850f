"""`tradeoff train` as a user runs it: the run directory it writes, a SIGKILLed run resumed to the same weights,
two data-parallel processes under torchrun, and one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

import tradeoff as to
from tradeoff.cli import app

MODELS = '''
import torch
from torch import nn


class DigitsMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
'''


def _task(folder: Path, **train: object) -> Path:
    (folder / "models.py").write_text(MODELS)
    task = {"name": "digits-train", "model": {"source": "torch", "factory": "models:DigitsMLP"},
            "data": {"source": "builtin", "name": "digits", "seed": 0}, "metric": "accuracy",
            "runtime": {"threads": 2}, "train": {"epochs": 6, "lr": 3e-3, **train}}
    path = folder / "task.yaml"
    path.write_text(yaml.safe_dump(task))
    return path


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tradeoff", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "2"}


def test_train_writes_weights_history_and_a_report_and_its_model_flows_into_evaluate(tmp_path: Path) -> None:
    task = _task(tmp_path, early_stopping={"monitor": "metric", "patience": 2})
    result = CliRunner().invoke(app, ["train", str(task), "--out", str(tmp_path / "runs"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    run = Path(summary["run_dir"])
    history = json.loads((run / "history.json").read_text())
    assert [r["epoch"] for r in history] == list(range(1, summary["epochs_run"] + 1))
    assert {"train_loss", "monitor_loss", "monitor_metric", "lr", "clipped", "samples_per_s"} <= set(history[0])
    page = (run / "report.html").read_text()
    assert 'id="curves"' in page and "<script src=" not in page  # plotly inlined: renders offline
    assert summary["metric"]["test"] > 0.85
    # the trained weights are a model any other command takes: a task pointing at them
    trained = yaml.safe_load(task.read_text())
    trained["model"]["weights"] = str(run / "model.safetensors")
    (tmp_path / "trained.yaml").write_text(yaml.safe_dump(trained))
    measured = to.evaluate(tmp_path / "trained.yaml", split="test")
    assert measured.metric == pytest.approx(summary["metric"]["test"])


def _state_epoch(path: Path) -> int:
    try:
        return int(torch.load(path, weights_only=True)["epoch"])
    except (FileNotFoundError, RuntimeError, EOFError):
        return 0


def test_a_sigkilled_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path: Path) -> None:
    task = _task(tmp_path, epochs=40, early_stopping=None, schedule="cosine")
    whole = subprocess.run(_command("train", str(task), "--out", str(tmp_path / "whole"), "--quiet"),
                           cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr
    out, state = tmp_path / "killed", tmp_path / "killed" / "digits-train" / "train_state.pt"
    process = subprocess.Popen(_command("train", str(task), "--out", str(out), "--quiet"), cwd=tmp_path, env=_env(),
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _state_epoch(state) < 3:
        assert process.poll() is None, f"train ended before it could be killed: {process.stderr.read()!r}"
        assert time.monotonic() < deadline, "train did not reach epoch 3"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = _state_epoch(state)
    assert 3 <= killed_at < 40 and not (out / "digits-train" / "model.safetensors").exists()
    resumed = subprocess.run(_command("train", str(task), "--out", str(out), "--resume", "--quiet"), cwd=tmp_path,
                             env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    final, reference = load_file(out / "digits-train" / "model.safetensors"), \
        load_file(tmp_path / "whole" / "digits-train" / "model.safetensors")
    assert all(torch.equal(final[k], reference[k]) for k in reference), f"killed at epoch {killed_at}"
    assert len(json.loads((out / "digits-train" / "history.json").read_text())) == 40


def test_two_processes_under_torchrun_train_as_well_as_one(tmp_path: Path) -> None:
    task = _task(tmp_path, epochs=8)
    one = subprocess.run(_command("train", str(task), "--out", str(tmp_path / "one"), "--json"), cwd=tmp_path,
                         env=_env(), capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "tradeoff",
                          "train", str(task), "--out", str(tmp_path / "two"), "--json"], cwd=tmp_path,
                         env={**_env(), "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    single, parallel = json.loads(one.stdout), json.loads(two.stdout)  # one JSON line: only the first process writes
    assert json.loads((tmp_path / "two" / "digits-train" / "env.json").read_text())["processes"] == 2
    assert abs(single["metric"]["val"] - parallel["metric"]["val"]) <= 0.03
    assert parallel["metric"]["val"] > 0.9


def test_train_mistakes_are_one_line(tmp_path: Path) -> None:
    task = _task(tmp_path, patience=3)
    result = CliRunner().invoke(app, ["train", str(task), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "patience" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    onnx_task = yaml.safe_load(_task(tmp_path).read_text())
    onnx_task["model"] = {"source": "onnx", "path": str(tmp_path / "model.onnx")}
    torch.onnx.export(torch.nn.Linear(64, 10), (torch.zeros(1, 64),), str(tmp_path / "model.onnx"), dynamo=False)
    (tmp_path / "onnx.yaml").write_text(yaml.safe_dump(onnx_task))
    result = CliRunner().invoke(app, ["train", str(tmp_path / "onnx.yaml"), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "needs a torch model" in result.stderr, result.output
