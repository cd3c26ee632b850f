"""A search bounded by a latency ceiling settles a candidate far from it in a few timing rounds and times one near it
in full: the time a search spends timing is time it does not spend training."""

from __future__ import annotations

import pytest

from tradeoff.architectures import MLP
from tradeoff.context import Context
from tradeoff.data import DataBundle
from tradeoff.evaluation import INTERLEAVED_ROUNDS, Evaluator
from tradeoff.metrics import get_metric
from tradeoff.model import ModelHandle
from tradeoff.search.study import Pruned
from tradeoff.tuning.cost import SCREEN_ROUNDS, CostMeter


def _mlp(*widths: int) -> ModelHandle:
    return ModelHandle(module=MLP((64,), 10, widths).eval())


def _timing_rounds(digits: DataBundle, ctx: Context, candidate: ModelHandle, ceiling: float, screen: bool) -> int:
    """How many interleaved rounds timed `candidate` under a latency ceiling of `ceiling` times the task's 64-32-10
    MLP (whether it was admitted or refused)."""
    reference = _mlp(32)
    evaluator = Evaluator(reference, digits, get_metric("accuracy"), 1, (1,), "torch")
    meter = CostMeter(evaluator, reference, {"max_latency_ratio": ceiling}, timed=True, screen=screen)
    try:
        meter.admit(candidate, ctx)
    except Pruned:
        pass
    latency = meter.latency_of(candidate)
    assert latency is not None
    return latency.rounds


@pytest.mark.parametrize("screen", [True, False])
def test_a_candidate_far_over_the_ceiling_is_settled_in_a_few_rounds(digits: DataBundle, ctx: Context,
                                                                     screen: bool) -> None:
    far_over = _mlp(2048, 2048)  # 17 MB of weights read per prediction against the task's 9 kB
    assert _timing_rounds(digits, ctx, far_over, 2.0, screen) == (SCREEN_ROUNDS if screen else INTERLEAVED_ROUNDS)


def test_a_candidate_near_the_ceiling_is_timed_in_every_round(digits: DataBundle, ctx: Context) -> None:
    twin = _mlp(32)  # the task's own architecture under a ceiling of 1.0: on any machine its ratio is near 1
    assert _timing_rounds(digits, ctx, twin, 1.0, screen=True) == INTERLEAVED_ROUNDS
