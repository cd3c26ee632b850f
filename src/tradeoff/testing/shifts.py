"""Real shifts of held-out data, to measure how often a drift check sees them and how often it alarms on unshifted
data: what tests/insight/test_monitor.py asserts and benchmarks/insight_drift.py reports, and a way to see what
your own data's monitoring would catch.

A draw is a data set split with a seed: its training split is the reference, its validation and test splits (rows
the reference never held) are the new data, shifted or not. Each seed splits anew, so draws are independent.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tradeoff.data import DataBundle
from tradeoff.insight.drift import input_drift

SHIFTS = ("noise", "scale", "class missing")
NOISE_STD = 1.0  # Gaussian noise added to each feature, in units of that feature's training standard deviation
SCALE = 1.5  # every feature multiplied by this (a unit changed, a sensor's gain)
MISSING_CLASS = 0  # the class whose rows are left out


def shifted(kind: str | None, x: np.ndarray, y: np.ndarray, reference: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
    """`x` (rows of class `y`) shifted by `kind`, or as it is for None."""
    if kind is None:
        return x
    if kind == "noise":
        return x + rng.normal(size=x.shape) * NOISE_STD * reference.std(axis=0, keepdims=True)
    if kind == "scale":
        return x * SCALE
    if kind == "class missing":
        return x[y != MISSING_CLASS]
    raise ValueError(f"unknown shift '{kind}'; known: {', '.join(SHIFTS)}")


def alarm_rate(load: Callable[[int], DataBundle], kind: str | None, draws: int) -> float:
    """The share of `draws` seeded draws (`load(seed)`: the data split with that seed) on which input_drift alarms:
    the detection rate of a shift, or the false alarm rate for None."""
    alarms = 0
    for seed in range(draws):
        data = load(seed)
        held_x = np.concatenate([data.val.x, data.test.x])
        held_y = np.concatenate([data.val.y, data.test.y])
        new = shifted(kind, held_x, held_y, data.train.x, np.random.default_rng(seed))
        alarms += input_drift(data.train.x, new, data.feature_names, seed=seed).drifted
    return alarms / draws
