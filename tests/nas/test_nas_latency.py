"""The latency table (tradeoff.nas.latency): a network's latency predicted from its blocks, each timed once on the
runtime, checked against a real measurement of the whole network. Timing on a shared 2-core machine is noisy, so
only structure and a loose bound are asserted; the errors are printed (pytest -s) for the record."""

from __future__ import annotations

import numpy as np
import pytest
from torch import nn

import tradeoff as to
from tradeoff.architectures import CNN, MLP, GRUClassifier, mnist1d_paper_cnn
from tradeoff.errors import ConfigError
from tradeoff.nas.latency import LatencyTable, blocks


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    return to.data.mnist1d(seed=0).val.x[:32]


def test_a_networks_latency_is_predicted_from_its_blocks_and_checked_against_a_measurement(batch: np.ndarray) -> None:
    paper = mnist1d_paper_cnn()
    assert [type(b).__name__ for b in blocks(paper)] == ["_ConvBlock", "_ConvBlock", "_ConvBlock", "Flatten", "Linear"]
    table = LatencyTable(threads=1, budget_s=0.1)
    wide = CNN([1, 40], 10, channels=[64, 64, 64], kernel=5, pool=False)
    models = {"paper cnn": paper, "wide cnn": wide,
              "mlp": MLP([40], 10, widths=[256, 256]), "gru": GRUClassifier([40], 10, hidden=32)}
    for name, model in models.items():
        check = table.check(model, batch)
        print(f"{name}: predicted {check.predicted_ms:.3f} ms, measured {check.measured_ms:.3f} ms, "
              f"error {check.relative_error:+.0%}")
        assert check.predicted_ms > 0 and check.measured_ms > 0
        assert abs(np.log(check.predicted_ms / check.measured_ms)) < np.log(3)  # loose: within a factor of 3
    timed = dict(table.entries)
    table.predict(CNN([1, 40], 10, channels=[64, 64, 64], kernel=5, pool=False), batch)  # nothing new to time
    assert table.entries == timed
    # the paper's 3 conv blocks differ; the wide CNN's second and third are one entry (same block, same input)
    assert sum(key[0].startswith("_ConvBlock") for key in timed) == 3 + 2


def test_only_torch_runtimes_time_blocks() -> None:
    with pytest.raises(ConfigError, match="'onnxruntime' is not a torch runtime"):
        LatencyTable(runtime="onnxruntime")
    with pytest.raises(ConfigError, match="no child modules"):
        LatencyTable().predict(nn.Linear(40, 10), np.zeros((2, 40), dtype=np.float32))
