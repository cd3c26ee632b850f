"""Optimize runs on real tabular data (breast_cancer, wine), shared by the insight tests: what a user explains or
monitors after tradeoff optimize."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

import tradeoff as to
from tradeoff.architectures import MLP
from tradeoff.data import DataBundle

TABULAR = {"breast_cancer": 2, "wine": 3}


def tabular_task(folder: Path, name: str) -> dict[str, object]:
    """A task whose model is an MLP trained here on the standardized `name` data set."""
    data_section = {"source": "builtin", "name": name, "seed": 0, "standardize": True}
    data: DataBundle = to.data.load_data(to.config.DataSpec(**data_section))  # type: ignore[attr-defined]
    options = {"input_shape": list(data.sample_shape), "classes": TABULAR[name], "widths": [32, 16]}
    torch.manual_seed(0)
    module = MLP(**options)  # type: ignore[arg-type]
    train, holdout = data.train_holdout()
    to.training.fit(module, train, holdout, epochs=40, lr=3e-3, early_stopping={"patience": 8}, seed=0)
    weights = folder / f"{name}.safetensors"
    save_file(module.state_dict(), str(weights))
    return {"name": name, "metric": "accuracy", "constraints": {"max_metric_drop": 0.02},
            "model": {"source": "torch", "factory": "tradeoff.architectures:MLP", "options": options,
                      "weights": str(weights)},
            "data": data_section, "runtime": {"target": "auto", "threads": 2, "batch_sizes": [1, 32]},
            "search": {"trials": 3, "seed": 0}}


@pytest.fixture(scope="session")
def tabular_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """runs/<name> of an optimize run on breast_cancer and on wine, and their task files beside them."""
    runs: dict[str, Path] = {}
    for name in TABULAR:
        folder = tmp_path_factory.mktemp(name)
        task = folder / "task.yaml"
        task.write_text(yaml.safe_dump(tabular_task(folder, name)))
        to.optimize(task, out=folder / "runs", quiet=True)
        runs[name] = folder / "runs" / name
    return runs
