"""prune.nm: every group of M weights keeps at most N, before and after fine-tuning and saving."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradeoff.artifact import load_artifact
from tradeoff.data import DataBundle
from tradeoff.errors import ConfigError
from tradeoff.evaluation import Evaluator
from tradeoff.metrics import get_metric
from tradeoff.model import ModelHandle
from tradeoff.passes import Context, build_pass
from tradeoff.passes.prune_magnitude import prunable_weights
from tradeoff.passes.prune_nm import is_nm_sparse


@pytest.mark.parametrize(("n", "m"), [(2, 4), (4, 8)])
def test_every_group_keeps_at_most_n_of_m_after_fine_tuning(n: int, m: int, mlp: ModelHandle, digits: DataBundle,
                                                              tmp_path: Path) -> None:
    ctx = Context(data=digits, seed=0)
    pruned = build_pass({"pass": "prune.nm", "n": n, "m": m}).apply(mlp, ctx)
    assert all(is_nm_sparse(layer, n, m) for layer, _ in prunable_weights(pruned.module))
    pruned.save(tmp_path)
    assert all(is_nm_sparse(layer, n, m) for layer, _ in prunable_weights(load_artifact(tmp_path).module))
    evaluator = Evaluator(mlp, digits, get_metric("accuracy"), 2, (1,))
    assert evaluator.score(mlp, "test") - evaluator.score(pruned, "test") <= 0.02


def test_n_must_be_below_m() -> None:
    with pytest.raises(ConfigError, match="n must be smaller than m"):
        build_pass({"pass": "prune.nm", "n": 4, "m": 4})
