"""search.mlflow: each trial that spent budget is an MLflow run, for teams that track experiments there."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from tradeoff.errors import ConfigError
from tradeoff.optimize import optimize
from tradeoff.search.record import records

mlflow = pytest.importorskip("mlflow", reason="MLflow is the optional extra 'tracking'")


def test_each_counted_trial_is_an_mlflow_run_with_what_the_sampler_was_told(task_file, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for this to write a local file store
    uri = (tmp_path / "mlruns").resolve().as_uri()
    task = task_file(objectives=["latency", "size"],
                     search={"trials": 3, "seed": 0, "passes": ["export.onnx", "quantize.dynamic", "quantize.fp16"],
                             "mlflow": uri})
    result = optimize(task, out=tmp_path / "runs", quiet=True)
    study = optuna.load_study(study_name="digits", storage=f"sqlite:///{result.run_dir / 'study.db'}")
    counted = {str(r.number): r for r in records(study) if r.counted}

    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("digits")  # the study's name
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(run.info.run_name for run in runs) == sorted(counted)  # one run per trial that spent budget
    for run in runs:
        trial = counted[run.info.run_name]
        if trial.state == "complete":
            assert run.data.metrics == pytest.approx({"latency_ratio": trial.objectives[0],
                                                      "size_bytes": trial.objectives[1]})


def test_a_tracking_uri_mlflow_refuses_stops_the_run_before_its_first_trial(task_file, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "false")
    task = task_file(search={"trials": 3, "seed": 0, "mlflow": (tmp_path / "mlruns").resolve().as_uri()})
    with pytest.raises(ConfigError, match="MLflow cannot track to file://.*check search.mlflow"):
        optimize(task, out=tmp_path / "runs", quiet=True)
    assert not (tmp_path / "runs" / "digits" / "study.db").exists()


def test_a_tuning_study_is_tracked_alike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tradeoff as to

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").resolve().as_uri()
    from torch import nn

    result = to.tune(nn.Linear(64, 10), data=to.data.digits(),
                     name="tracked-tune", train={"epochs": 1}, search={"trials": 2, "seed": 0, "mlflow": uri},
                     tune={"space": {"train.lr": [0.001, 0.01]}, "sampler": "grid"}, out=tmp_path / "runs",
                     quiet=True)
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("tracked-tune").experiment_id])
    trials = {r.number: r for r in records(optuna.load_study(
        study_name="tracked-tune", storage=f"sqlite:///{result.run_dir / 'study.db'}")) if r.counted}
    assert sorted(int(run.info.run_name) for run in runs) == sorted(trials)
    for run in runs:
        assert run.data.metrics["negated_metric"] == pytest.approx(-trials[int(run.info.run_name)].values["metric"])
