"""A baseline that scores about what guessing would gets a warning: its outputs are likely read wrongly."""

from __future__ import annotations

import json
from pathlib import Path

import torch

import tradeoff as to
from tradeoff.data import DataBundle
from tradeoff.evaluation import Evaluator
from tradeoff.metrics import get_metric, near_chance_warnings
from tradeoff.model import ModelHandle


def untrained_mlp() -> ModelHandle:
    from conftest import DigitsMLP

    torch.manual_seed(0)
    return ModelHandle(module=DigitsMLP().eval())


def validation_warnings(model: ModelHandle, data: DataBundle, metric: str) -> list[str]:
    scorer = get_metric(metric)
    score = Evaluator(model, data, scorer, threads=2, batch_sizes=(1,)).score(model, "val")
    return near_chance_warnings(scorer, score, data.val.y)


def test_random_weights_are_near_chance_and_trained_ones_are_not(mlp: ModelHandle, digits: DataBundle) -> None:
    for metric in ("accuracy", "f1_macro"):
        warned = validation_warnings(untrained_mlp(), digits, metric)
        assert len(warned) == 1 and f"baseline's {metric} on validation" in warned[0] and "near chance" in warned[0]
        assert validation_warnings(mlp, digits, metric) == []


def test_an_optimize_run_on_a_near_chance_baseline_says_so_in_its_report(digits: DataBundle, tmp_path: Path) -> None:
    result = to.optimize(model=untrained_mlp().module, data=digits, out=tmp_path, quiet=True, name="untrained",
                         search={"trials": 1, "passes": ["export.onnx"]}, runtime={"threads": 2})
    written = json.loads(result.report.json_path.read_text())["warnings"]
    assert any("near chance" in w and "majority class" in w for w in written), written
