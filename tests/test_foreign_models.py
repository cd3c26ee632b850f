"""ONNX classifiers from scikit-learn (skl2onnx) are scored on their probabilities, never on their label output."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import helper
from skl2onnx import to_onnx
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from typer.testing import CliRunner

from tradeoff.cli import app
from tradeoff.config import DataSpec, ModelSpec
from tradeoff.data import DataBundle, Split, load_data
from tradeoff.errors import ModelError
from tradeoff.evaluation import Evaluator
from tradeoff.metrics import get_metric
from tradeoff.model import ModelHandle, load_model
from tradeoff.passes import Context, build_pass

runner = CliRunner()


@pytest.fixture(scope="module")
def logreg(digits: DataBundle) -> LogisticRegression:
    return LogisticRegression(max_iter=1000).fit(digits.train.x, digits.train.y)


@pytest.fixture(scope="module")
def mlp_classifier(digits: DataBundle) -> MLPClassifier:
    """Converted to plain MatMul/Softmax operators, which OpenVINO and the quantizers take."""
    with warnings.catch_warnings():  # 300 iterations reach 0.98 on validation; converging fully takes longer
        warnings.simplefilter("ignore", ConvergenceWarning)
        return MLPClassifier(hidden_layer_sizes=(64,), max_iter=300, random_state=0).fit(digits.train.x, digits.train.y)


def save_onnx(estimator: object, path: Path, zipmap: bool = True) -> Path:
    """skl2onnx's default output (label, then probabilities through a ZipMap), or with the ZipMap turned off."""
    sample = np.zeros((1, 64), dtype=np.float32)
    path.write_bytes(to_onnx(estimator, sample, options=None if zipmap else {"zipmap": False}).SerializeToString())
    return path


def sklearn_accuracy(estimator: LogisticRegression | MLPClassifier, split: Split) -> float:
    return float(np.mean(estimator.predict(split.x) == split.y))


def accuracy(model: ModelHandle, data: DataBundle, split: str) -> float:
    return Evaluator(model, data, get_metric("accuracy"), threads=2, batch_sizes=(1,)).score(model, split)


@pytest.mark.parametrize("zipmap", [True, False], ids=["zipmap", "no-zipmap"])
def test_an_skl2onnx_classifier_scores_as_scikit_learn_does_on_the_same_rows(
        zipmap: bool, logreg: LogisticRegression, digits: DataBundle, tmp_path: Path) -> None:
    model = load_model(ModelSpec(source="onnx", path=save_onnx(logreg, tmp_path / "m.onnx", zipmap)))
    graph = onnx.load_from_string(model.onnx_bytes)  # type: ignore[arg-type]
    onnx.checker.check_model(graph)  # the graph cut to one output is still valid: its artifact loads back
    assert [o.type.tensor_type.elem_type for o in graph.graph.output] == [onnx.TensorProto.FLOAT]
    for split in ("val", "test"):  # was 0.0186: the int64 label output read as logits
        assert accuracy(model, digits, split) == pytest.approx(sklearn_accuracy(logreg, getattr(digits, split)))


def test_model_output_names_the_output_and_refuses_labels(logreg: LogisticRegression, digits: DataBundle,
                                                          tmp_path: Path) -> None:
    expected = sklearn_accuracy(logreg, digits.val)
    with_zipmap, plain = save_onnx(logreg, tmp_path / "z.onnx"), save_onnx(logreg, tmp_path / "p.onnx", zipmap=False)
    for path, output in ((with_zipmap, "output_probability"), (plain, "probabilities")):
        model = load_model(ModelSpec(source="onnx", path=path, output=output))
        assert accuracy(model, digits, "val") == pytest.approx(expected)
    with pytest.raises(ModelError, match="'output_label' holds int64 values, not scores"):
        load_model(ModelSpec(source="onnx", path=with_zipmap, output="output_label"))
    with pytest.raises(ModelError, match="'logits' is not an output .* output_label \\(int64\\), output_probability"):
        load_model(ModelSpec(source="onnx", path=with_zipmap, output="logits"))


def with_extra_output(path: Path, source: str, name: str) -> Path:
    """The graph with one more float output: `source` copied out under `name`."""
    graph = onnx.load(path)
    graph.graph.node.append(helper.make_node("Identity", [source], [name]))
    graph.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [None, None]))
    target = path.with_name(f"{path.stem}_{name}.onnx")
    onnx.save(graph, target)
    return target


def test_an_output_whose_meaning_is_unclear_is_refused_in_one_line(
        mlp_classifier: MLPClassifier, digits: DataBundle, tmp_path: Path) -> None:
    plain = save_onnx(mlp_classifier, tmp_path / "m.onnx", zipmap=False)
    hidden = next(n.output[0] for n in onnx.load(plain).graph.node if n.op_type == "Relu")
    with_features = with_extra_output(plain, hidden, "features")  # two float outputs, one named as scores
    assert accuracy(load_model(ModelSpec(source="onnx", path=with_features)), digits, "val") == pytest.approx(
        sklearn_accuracy(mlp_classifier, digits.val))
    ambiguous = with_extra_output(plain, "probabilities", "scores")  # two float outputs of the same meaning
    task = tmp_path / "task.yaml"
    task.write_text(yaml.safe_dump({"name": "ambiguous", "model": {"source": "onnx", "path": ambiguous.name},
                                    "data": {"source": "builtin", "name": "digits"}}))
    result = runner.invoke(app, ["evaluate", str(task)])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.output
    assert "cannot tell which output" in result.stderr and "set model.output" in result.stderr
    named = load_model(ModelSpec(source="onnx", path=ambiguous, output="scores"))
    assert accuracy(named, digits, "val") == pytest.approx(sklearn_accuracy(mlp_classifier, digits.val))


def test_runtimes_and_onnx_passes_see_only_the_chosen_output(mlp_classifier: MLPClassifier, digits: DataBundle,
                                                             ctx: Context, tmp_path: Path) -> None:
    model = load_model(ModelSpec(source="onnx", path=save_onnx(mlp_classifier, tmp_path / "m.onnx")))
    expected = sklearn_accuracy(mlp_classifier, digits.val)
    for runtime in ("onnxruntime", "openvino"):  # the label branch (ArrayFeatureExtractor) is gone for OpenVINO
        assert accuracy(model.with_runtime(runtime), digits, "val") == pytest.approx(expected)
    for step in ({"pass": "quantize.dynamic"}, {"pass": "quantize.static", "per_channel": False},
                 {"pass": "quantize.fp16"}):
        assert accuracy(build_pass(step).apply(model, ctx), digits, "val") == pytest.approx(expected, abs=0.02)


def test_tradeoff_evaluate_scores_an_skl2onnx_file_with_a_csv_dataset(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    columns = [f"pixel{i}" for i in range(x.shape[1])]
    rows = "\n".join(",".join(f"{v:g}" for v in (*r, label)) for r, label in zip(x / 16, y, strict=True))
    (tmp_path / "digits.csv").write_text(",".join([*columns, "target"]) + "\n" + rows + "\n")
    data = load_data(DataSpec(source="file", path=tmp_path / "digits.csv"))  # tradeoff's own split of the file
    estimator = LogisticRegression(max_iter=1000).fit(data.train.x, data.train.y)
    save_onnx(estimator, tmp_path / "classifier.onnx")
    task = tmp_path / "task.yaml"
    task.write_text(yaml.safe_dump({"name": "skl", "model": {"source": "onnx", "path": "classifier.onnx"},
                                    "data": {"source": "file", "path": "digits.csv"}, "metric": "accuracy",
                                    "runtime": {"target": "onnxruntime", "threads": 2}}))
    for split in ("val", "test"):
        result = runner.invoke(app, ["evaluate", str(task), "--split", split, "--json"])
        assert result.exit_code == 0, result.output
        measured = json.loads(result.stdout)
        assert measured["metric"] == pytest.approx(sklearn_accuracy(estimator, getattr(data, split)))
        assert measured["metric"] > 0.9
