"""Experiment tracking for teams that keep their experiments in MLflow: each trial that spent budget becomes an
MLflow run through Optuna's own MLflowCallback (the study's name is the experiment's, the trial's parameters its
params, what the sampler was told its metrics, the trial's recipe and measured values its tags)."""

from __future__ import annotations

from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial

from tradeoff.config import Settings
from tradeoff.errors import ConfigError
from tradeoff.objectives import sampled_names


def mlflow_tracker(tracking_uri: str, settings: Settings,
                   higher_is_better: bool) -> Callable[[optuna.Study, FrozenTrial], None]:
    """An Optuna callback that logs a finished trial to the MLflow server or store at `tracking_uri`, which is
    opened here so that a URI MLflow refuses stops the run before its first trial, not after it."""
    try:
        import mlflow
        from optuna_integration.mlflow import MLflowCallback
    except ImportError:
        raise ConfigError("search.mlflow needs MLflow, which is not installed",
                          "pip install 'tradeoff[tracking]', or remove search.mlflow") from None
    try:
        mlflow.tracking.MlflowClient(tracking_uri).search_experiments(max_results=1)
    except Exception as exc:  # MLflow raises its own and its stores' errors for a URI it cannot use
        raise ConfigError(f"MLflow cannot track to {tracking_uri}: {str(exc).splitlines()[0]}",
                          "check search.mlflow (e.g. sqlite:///mlflow.db or http://host:5000)") from None
    return MLflowCallback(tracking_uri=tracking_uri, metric_name=sampled_names(settings.objectives, higher_is_better))
