"""Architecture spaces (tradeoff.nas.space): a declared space samples valid networks define-by-run, a block's
parameters exist exactly when the depth reaches it, mistakes are one line, and a user's space by import path goes
through the same interface and rebuilds from its trial's parameters."""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
import pytest
import torch
from torch import nn

import tradeoff as to
from tradeoff.config import ModelSpec
from tradeoff.errors import ConfigError
from tradeoff.model import load_model
from tradeoff.nas import Architecture, load_space
from tradeoff.nas.space import USER_FACTORY

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _sampled(space_spec: dict | str, trials: int, shape: tuple[int, ...] = (40,), seed: int = 0,
             search_dirs: tuple[Path, ...] = ()) -> list[tuple[optuna.trial.FrozenTrial, Architecture]]:
    space = load_space(space_spec, shape, 10, search_dirs)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    sampled = []
    for _ in range(trials):
        trial = study.ask()
        architecture = space.sample(trial)
        study.tell(trial, 0.0)
        sampled.append((study.trials[-1], architecture))
    return sampled


def test_every_family_builds_and_runs_on_the_data_it_is_sampled_for() -> None:
    signals = torch.from_numpy(to.data.mnist1d(seed=0).val.x[:4])
    spec = {"family": ["mlp", "cnn", "gru"], "cnn": {"depth": {"low": 1, "high": 4}, "norm": ["none", "batch"],
                                                    "dropout": {"low": 0.0, "high": 0.5}}}
    sampled = _sampled(spec, 30)
    assert {a.factory.rpartition(":")[2] for _, a in sampled} == {"MLP", "CNN", "GRUClassifier"}
    for trial, architecture in sampled:
        family = trial.params["family"]
        assert all(name == "family" or name.startswith(f"{family}_") for name in trial.params)
        assert architecture.build().eval()(signals).shape == (4, 10)
    spec = ModelSpec(**sampled[0][1].model_section())  # the chosen architecture is a task file's model as is
    torch.manual_seed(0)
    rebuilt = load_model(spec).torch_module()
    torch.manual_seed(0)
    assert torch.equal(rebuilt(signals), sampled[0][1].build().eval()(signals))
    images = _sampled({"family": "cnn", "cnn": {"width": [4, 8], "stride": [1, 2]}}, 5, shape=(1, 8, 8))
    assert all(a.build()(torch.zeros(2, 1, 8, 8)).shape == (2, 10) for _, a in images)


def test_skip_connections_are_kept_only_where_a_block_can_take_one() -> None:
    """A skip connection needs a block whose output has its input's shape; elsewhere it would change nothing, and
    two such twins would be two candidates trained and measured alike (in the rerank's top five, twice)."""
    spec = {"family": ["cnn", "mlp"], "cnn": {"depth": {"low": 1, "high": 3}, "width": [8, 16], "stride": [1, 2]},
            "mlp": {"depth": {"low": 1, "high": 3}, "width": [16, 32]}}
    sampled = _sampled(spec, 60)
    for _, architecture in sampled:
        module = architecture.build()
        adds = any(getattr(m, "residual", False) or type(m).__name__ == "_Residual" for m in module.modules())
        assert architecture.options["residual"] == adds
    chose_skip = [a.options["residual"] for t, a in sampled if t.params.get(f"{t.params['family']}_skip")]
    assert any(chose_skip) and not all(chose_skip)  # a skip where it fits, none where it does not


def test_a_blocks_parameters_exist_exactly_when_the_depth_reaches_it() -> None:
    spec = {"family": "cnn", "cnn": {"depth": {"low": 1, "high": 4}, "width": [4, 8, 16], "kernel": [3, 5, 7],
                                     "stride": [1, 2], "activation": ["relu", "gelu"]}}
    sampled = _sampled(spec, 40)
    assert {t.params["depth"] for t, _ in sampled} == {1, 2, 3, 4}
    for trial, architecture in sampled:
        depth = trial.params["depth"]
        for kind in ("width", "kernel", "stride"):
            assert {n for n in trial.params if n.startswith(f"{kind}_")} == {f"{kind}_{i}" for i in range(depth)}
        assert architecture.options["channels"] == [trial.params[f"width_{i}"] for i in range(depth)]
        assert architecture.options["kernel"] == [trial.params[f"kernel_{i}"] for i in range(depth)]
        built = [m for m in architecture.build().modules() if isinstance(m, nn.Conv1d)]
        assert [c.kernel_size[0] for c in built] == architecture.options["kernel"]
    assert "pool" not in sampled[0][0].params  # a choice of one value (the default pool: [false]) is fixed
    fixed = _sampled({"family": "mlp", "mlp": {"depth": 2, "width": 16, "norm": "batch", "skip": False}}, 2)
    assert all(t.params == {} for t, _ in fixed) and fixed[0][1].options["widths"] == [16, 16]


def test_space_mistakes_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'cnn.widht' in nas.space \(did you mean 'width'\?\)"):
        load_space({"family": "cnn", "cnn": {"widht": [8]}}, (40,), 10)
    with pytest.raises(ConfigError, match="high \\(1\\) is below low \\(3\\)"):
        load_space({"family": "mlp", "mlp": {"depth": {"low": 3, "high": 1}}}, (40,), 10)
    with pytest.raises(ConfigError, match=r"'cnn.depth'.*give a depth range as \{low: 1, high: 4\}"):
        load_space({"family": "cnn", "cnn": {"depth": [1, 4]}}, (40,), 10)
    with pytest.raises(ConfigError, match="section 'gru' is given but family"):
        load_space({"family": "cnn", "gru": {"hidden": [8]}}, (40,), 10)
    with pytest.raises(ConfigError, match="family"):
        load_space({"family": ["transformer"]}, (40,), 10)


def test_a_user_space_by_import_path_samples_through_the_same_interface(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_space.py").write_text(
        "from torch import nn\n"
        "def modules(trial):\n"
        "    width = trial.suggest_categorical('hidden', [8, 16])\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(40, width), nn.ReLU(), nn.Linear(width, 10))\n"
        "def options(trial):\n"
        "    return {'factory': 'tradeoff.architectures:MLP',\n"
        "            'options': {'input_shape': [40], 'classes': 10, 'widths': [trial.suggest_int('width', 4, 9)]}}\n"
        "def wrong(trial):\n"
        "    return 'a string'\n")
    monkeypatch.chdir(tmp_path)
    for trial, architecture in _sampled("my_space:modules", 4, search_dirs=(tmp_path,)):
        assert architecture.factory == USER_FACTORY and architecture.options["params"] == trial.params
        assert architecture.build()[1].out_features == trial.params["hidden"]  # rebuilt from the trial's values
    for trial, architecture in _sampled("my_space:options", 3, search_dirs=(tmp_path,)):
        assert architecture.options["widths"] == [trial.params["width"]] and isinstance(architecture.build(), nn.Module)
    with pytest.raises(ConfigError, match="nas.space 'my_space:wrong' returned a str"):
        _sampled("my_space:wrong", 1, search_dirs=(tmp_path,))
    sys.modules.pop("my_space", None)
