"""An optimize run read back: the original model, its data as the run split it, and the model it shipped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from tradeoff.errors import ConfigError
from tradeoff.insight.run import load_run


def test_a_run_loads_again_with_its_data_named_and_prepared_as_it_was(tabular_runs: dict[str, Path]) -> None:
    run = load_run(tabular_runs["breast_cancer"])
    data = run.original.data
    assert data.feature_names is not None and data.feature_names[0] == "mean radius"
    raw = load_breast_cancer().data
    prepared = data.prepare(raw)
    # every split is the standardized raw data: each test row is found among the prepared rows
    assert np.isclose(prepared[:, None, :4], data.test.x[None, :5, :4], atol=1e-5).all(axis=2).any(axis=0).all()
    assert run.outputs(run.optimized, data.test.x[:3]).shape == (3, 2)
    assert run.report.best.split == "test" and 0.9 < run.report.best.metric <= 1


def test_a_folder_that_is_no_run_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a finished optimize run"):
        load_run(tmp_path)
