"""Zero-cost proxies (tradeoff.nas.proxy) on real data (MNIST-1D): over CNNs of clearly different capacity,
ranking by NASWOT or synflow on one untrained batch agrees with the ranking by validation accuracy after one epoch of
real training, which is what pre-ranking candidates relies on; ranking is reproducible and leaves models as they
were."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

import tradeoff as to
from tradeoff.config import TrainSpec
from tradeoff.errors import ModelError
from tradeoff.nas import Architecture, load_space
from tradeoff.nas.proxy import Candidate, naswot, proxy_batch, rank_by_proxy, sample_candidates, synflow
from tradeoff.training.trainer import Trainer

optuna.logging.set_verbosity(optuna.logging.WARNING)
CNN = "tradeoff.architectures:CNN"
CAPACITIES = [{"channels": [2], "pool": False}, {"channels": [4, 4]}, {"channels": [8, 8], "stride": 2},
              {"channels": [16, 16, 16], "stride": 2, "pool": False, "head": "flatten"},
              {"channels": [32, 32, 32], "kernel": 5, "stride": 2, "pool": False, "head": "flatten"},
              {"channels": [48, 48, 48], "kernel": 5, "stride": [2, 2, 1], "pool": False, "head": "flatten"}]


@pytest.fixture(scope="module")
def mnist1d() -> to.data.DataBundle:
    return to.data.mnist1d(seed=0)


def _candidates() -> list[Candidate]:
    return [Candidate({"index": i}, Architecture(CNN, {"input_shape": [1, 40], "classes": 10, **options}))
            for i, options in enumerate(CAPACITIES)]


def test_proxy_ranks_agree_with_accuracy_after_short_training(mnist1d: to.data.DataBundle) -> None:
    batch = proxy_batch(mnist1d.train, 64, seed=0)
    accuracy = []
    for candidate in _candidates():
        torch.manual_seed(0)
        module = candidate.architecture.build()
        Trainer(TrainSpec(epochs=1, lr=5e-3, early_stopping=None)).fit(module, mnist1d.train, mnist1d.val)
        with torch.inference_mode():
            predicted = module(torch.from_numpy(mnist1d.val.x)).argmax(1).numpy()
        accuracy.append(float((predicted == mnist1d.val.y).mean()))
    assert max(accuracy) - min(accuracy) > 0.15  # capacities clearly apart, so the ranking is not noise
    for proxy in ("naswot", "synflow"):
        scores = {r.candidate.params["index"]: r.score for r in rank_by_proxy(_candidates(), batch, proxy)}
        correlation = spearmanr([scores[i] for i in range(len(CAPACITIES))], accuracy).statistic
        assert correlation > 0.6, f"{proxy}: Spearman {correlation:.2f} with accuracies {accuracy}"


def test_ranking_sampled_candidates_is_reproducible_and_leaves_models_untouched(mnist1d: to.data.DataBundle) -> None:
    space = load_space({"family": "cnn", "cnn": {"depth": {"low": 1, "high": 3}, "width": [4, 16, 32],
                                                "norm": ["none", "batch"]}}, mnist1d.sample_shape, 10)
    candidates = sample_candidates(space, 8, seed=0)
    assert [c.params for c in candidates] == [c.params for c in sample_candidates(space, 8, seed=0)]
    batch = proxy_batch(mnist1d.train, 32, seed=1)
    ranked = rank_by_proxy(candidates, batch)
    assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)
    assert [r.score for r in ranked] == [r.score for r in rank_by_proxy(candidates, batch)]
    assert {id(r.candidate) for r in ranked} == {id(c) for c in candidates}
    study = optuna.create_study()
    study.enqueue_trial(ranked[0].candidate.params)  # the best by proxy is what the search trains first
    assert space.sample(study.ask()) == ranked[0].candidate.architecture

    module = Architecture(CNN, {"input_shape": [1, 40], "classes": 10, "channels": [8], "norm": "batch"}).build()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    naswot(module, batch), synflow(module, batch)
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_a_model_without_activation_modules_is_a_one_line_error(mnist1d: to.data.DataBundle) -> None:
    with pytest.raises(ModelError, match="has none"):
        naswot(nn.Sequential(nn.Linear(40, 10)), proxy_batch(mnist1d.train, 8))
    assert np.isfinite(synflow(nn.Sequential(nn.Linear(40, 10)), proxy_batch(mnist1d.train, 8)))
