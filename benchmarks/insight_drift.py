"""Drift detection (issue 15): how often `tradeoff monitor`'s input drift check sees real shifts of held-out data
(Gaussian noise of one standard deviation per feature, every feature x1.5, the rows of class 0 left out), and how
often it alarms on unshifted held-out data, over seeded draws (each seed splits the data set anew: the training
split is the reference, validation and test the new rows). Tabular: breast_cancer, wine (per-feature tests and MMD);
images: digits as 1x8x8, MMD alone. 20 draws with --quick, 100 without. Part of benchmarks/insight.py."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import tradeoff as to
from benchmarks.common import target
from tradeoff.data import DataBundle
from tradeoff.insight.drift import is_multivariate
from tradeoff.testing.shifts import SHIFTS, alarm_rate

DETECTION, FALSE_ALARM = 0.95, 0.05  # the targets


DATA_SETS: dict[str, Callable[[int], DataBundle]] = {
    "breast_cancer": lambda seed: to.data.breast_cancer(seed=seed),
    "wine": lambda seed: to.data.wine(seed=seed),
    "digits 1x8x8": lambda seed: to.data.digits(shape=[1, 8, 8], seed=seed),
}


def measure(quick: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    draws = 20 if quick else 100
    rows: list[dict[str, Any]] = []
    targets: list[dict[str, Any]] = []
    for name, load in DATA_SETS.items():
        sample = load(0)
        test = "MMD" if is_multivariate(sample.sample_shape) else "KS/chi-squared per feature (Holm) + MMD"
        for kind in (*SHIFTS, None):
            start = time.perf_counter()
            rate = alarm_rate(load, kind, draws)
            shift = kind or "none"
            rows.append({"data": name, "shift": shift, "test": test, "draws": draws, "alarm_rate": rate,
                         "train_rows": len(sample.train), "new_rows": len(sample.val) + len(sample.test),
                         "seconds": round(time.perf_counter() - start, 2)})
            print(f"{name:>16} {shift:>14}: alarms on {rate:.2f} of {draws} draws", flush=True)
            targets.append(target(f"drift detected, {name}, {shift}", rate, DETECTION, ">=") if kind is not None
                           else target(f"drift false alarm, {name}", rate, FALSE_ALARM, "<="))
    return rows, targets
