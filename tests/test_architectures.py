"""Models described by a few numbers (tradeoff.architectures), given as a task's factory with options: they run on
real data of each kind, batch norm goes where it is asked for, and a saved model is rebuilt from its options."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from typer.testing import CliRunner

import tradeoff as to
from tradeoff.architectures import CNN, MLP, GRUClassifier, mnist1d_paper_cnn
from tradeoff.artifact import load_artifact
from tradeoff.cli import app
from tradeoff.config import ModelSpec
from tradeoff.errors import ConfigError
from tradeoff.model import load_model


@pytest.fixture(scope="module")
def mnist1d() -> to.data.DataBundle:
    return to.data.mnist1d(seed=0)


def test_each_kind_runs_on_its_data(mnist1d: to.data.DataBundle) -> None:
    signals = torch.from_numpy(mnist1d.val.x[:8])
    images = torch.from_numpy(to.data.digits(shape=(1, 8, 8)).val.x[:8])
    assert mnist1d.sample_shape == (40,) and len(mnist1d.train) + len(mnist1d.val) + len(mnist1d.test) == 5000
    assert CNN([1, 40], 10, channels=[8, 8], residual=True)(signals).shape == (8, 10)  # (N, L) read as one channel
    assert GRUClassifier([40], 10, hidden=16)(signals).shape == (8, 10)
    assert CNN([1, 8, 8], 10)(images).shape == (8, 10)
    assert MLP([1, 8, 8], 10, widths=[32])(images).shape == (8, 10)


def test_batch_norm_follows_every_conv_and_linear_only_when_asked() -> None:
    def count(module: nn.Module, kind: type[nn.Module]) -> int:
        return sum(isinstance(m, kind) for m in module.modules())

    assert count(MLP([64], 10, widths=[32, 32, 32], norm="batch"), nn.BatchNorm1d) == 3
    assert count(CNN([1, 8, 8], 10, channels=[8, 16], norm="batch"), nn.BatchNorm2d) == 2
    assert count(CNN([1, 8, 8], 10, channels=[8, 16]), nn.BatchNorm2d) == 0
    blocks = [m for m in CNN([1, 40], 10, channels=[8, 8, 16], residual=True).modules() if hasattr(m, "residual")]
    assert [b.residual for b in blocks] == [False, True, False]  # only where channels in == out


def test_a_task_trains_a_described_model_and_its_artifact_rebuilds_from_the_options(tmp_path: Path) -> None:
    options = {"input_shape": [1, 40], "classes": 10, "channels": [16, 16], "norm": "batch", "kernel": 5}
    task = {"name": "signal", "model": {"source": "torch", "factory": "tradeoff.architectures:CNN", "options": options},
            "data": {"source": "builtin", "name": "mnist1d", "seed": 0}, "metric": "accuracy",
            "train": {"epochs": 2, "lr": 3e-3}}
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(task))
    trained = to.train(tmp_path / "task.yaml", out=tmp_path / "runs", quiet=True)
    assert trained.model.factory_options == options and trained.val_metric > 0.2
    trained.model.save(tmp_path / "artifact")
    loaded = load_artifact(tmp_path / "artifact")
    batch = torch.from_numpy(to.data.mnist1d(seed=0).test.x[:16])
    with torch.inference_mode():
        assert torch.equal(loaded.module(batch), trained.model.module(batch))  # type: ignore[misc]


def test_options_that_do_not_fit_the_factory_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="widht"):
        load_model(ModelSpec(source="torch", factory="tradeoff.architectures:MLP",
                             options={"input_shape": [64], "classes": 10, "widht": [3]}))
    with pytest.raises(ConfigError, match="channels"):
        CNN([1, 8, 8], 10, channels=[])
    task = {"name": "bad", "model": {"source": "onnx", "path": "m.onnx", "options": {"classes": 3}},
            "data": {"source": "builtin", "name": "digits"}}
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(task))
    result = CliRunner().invoke(app, ["train", str(tmp_path / "task.yaml")])
    assert result.exit_code == 2 and "options" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_the_mnist1d_papers_cnn_has_the_papers_layers_and_parameter_count(mnist1d: to.data.DataBundle) -> None:
    # ConvBase in github.com/greydanus/mnist1d (notebooks/models.py): Conv1d(1, 25, 5), Conv1d(25, 25, 3) twice, all
    # stride 2 padding 1, ReLU, then Linear(125, 10) over the flattened 25 x 5 features: 5,210 parameters
    model = mnist1d_paper_cnn()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv1d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
        (1, 25, (5,), (2,), (1,)), (25, 25, (3,), (2,), (1,)), (25, 25, (3,), (2,), (1,))]
    assert sum(p.numel() for p in model.parameters()) == 5210
    assert model(torch.from_numpy(mnist1d.val.x[:4])).shape == (4, 10)


def test_per_block_kernel_and_stride_and_a_flatten_head_that_sizes_itself() -> None:
    model = CNN([1, 40], 10, channels=[4, 8], kernel=[7, 3], stride=[2, 1], pool=False, head="flatten")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv1d)]
    assert [(c.kernel_size, c.stride) for c in convs] == [((7,), (2,)), ((3,), (1,))]
    assert model.head[-1].in_features == 8 * 20  # 40 -> 20 (stride 2) -> 20
    images = CNN([1, 8, 8], 10, channels=[4], pool=True, head="flatten")
    assert images.head[-1].in_features == 4 * 4 * 4 and images(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(ConfigError, match="kernel has 3 entries for 2 blocks"):
        CNN([1, 40], 10, channels=[4, 8], kernel=[3, 3, 3])
    with pytest.raises(ConfigError, match="block 1 leaves nothing"):
        CNN([1, 8], 10, channels=[4, 4], kernel=5, stride=2, padding=0, pool=False)  # 8 -> 2 -> nothing


def test_skip_connections_in_an_mlp_go_where_widths_match() -> None:
    plain, skipped = MLP([64], 10, widths=[32, 32, 16]), MLP([64], 10, widths=[32, 32, 16], residual=True)
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in skipped.parameters())
    assert [type(m).__name__ for m in skipped.layers].count("_Residual") == 1  # only 32 -> 32
    assert list(plain.state_dict()) == list(MLP([64], 10, widths=[32, 32, 16], residual=False).state_dict())
