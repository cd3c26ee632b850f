"""Continuous evaluation of a shipped model: on new, unlabelled data, has the input drifted from the training data,
and does the optimized model still agree with the original as often as it did on the test split at optimize time?

Agreement is the share of rows where both models predict the same class (classifiers), or the mean cosine between
their outputs (embedding models). It disagrees when it is significantly lower than on test: a one-sided test at
ALPHA of the two figures with both sample sizes counted (Fisher's exact test of the two 2x2 counts; Welch's t-test
of the two sets of cosines), so 97 agreeing rows of 100 pass after 114 of 114 on test (96 do not), and the same
share of 10,000 rows does not. `least_expected` is the lowest figure now that would still pass.

The check alarms (exit code 1 from `tradeoff monitor`) when the input drifted or the models disagree; each runs at
ALPHA. Where the new data has targets, both models' metric on it is reported too (not part of the alarm: labels
arrive late or never, and the metric's drop is what optimize already bounded).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy.stats import fisher_exact, t, ttest_ind

from tradeoff.errors import DataError
from tradeoff.insight.drift import ALPHA, MMD_ROWS, Drift, input_drift, mmd_test
from tradeoff.insight.run import OptimizedRun, load_run
from tradeoff.metrics import Metric, get_metric, predicted_labels, row_cosines
from tradeoff.new_data import read_new_data
from tradeoff.rundir import write_directory

MIN_ROWS = 10  # fewer rows than this give no test any power to see drift


@dataclass(frozen=True)
class Agreement:
    measure: Literal["classes", "cosine"]  # the share of rows predicted alike, or the mean cosine of the outputs
    now: float
    rows: int
    at_test: float  # the same figure on the test split, from the run
    test_rows: int
    least_expected: float  # the lowest figure now that does not differ significantly from at_test
    p_value: float  # one-sided: agreement now is lower than on test
    disagrees: bool


@dataclass(frozen=True)
class LabelledMetric:
    name: str
    original: float
    optimized: float


@dataclass(frozen=True)
class MonitorResult:
    run_dir: Path
    data: Path
    drift: Drift
    agreement: Agreement
    metric: LabelledMetric | None  # where the new data has targets
    folder: Path  # runs/<name>/monitor/<UTC timestamp>/, holding monitor.json and monitor.html

    @property
    def alarm(self) -> bool:
        return self.drift.drifted or self.agreement.disagrees

    @property
    def json_path(self) -> Path:
        return self.folder / "monitor.json"

    @property
    def html_path(self) -> Path:
        return self.folder / "monitor.html"

    def to_dict(self) -> dict[str, Any]:
        return {**json.loads(json.dumps(asdict(self), default=str)), "alarm": self.alarm,
                "drift_method": self.drift.method}


def class_agreement(now: np.ndarray, test: np.ndarray, alpha: float = ALPHA) -> Agreement:
    """`now` and `test`: per row, whether the two models predicted the same class."""
    agree_now, agree_test = int(now.sum()), int(test.sum())

    def p_value(agreeing: int) -> float:
        table = [[agreeing, len(now) - agreeing], [agree_test, len(test) - agree_test]]
        return float(fisher_exact(table, alternative="less").pvalue)

    low, high = 0, len(now)  # the least count that passes: the p-value grows with the count
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if p_value(middle) >= alpha else (middle + 1, high)
    p = p_value(agree_now)
    return Agreement("classes", agree_now / len(now), len(now), agree_test / len(test), len(test), low / len(now), p,
                     p < alpha)


def cosine_agreement(now: np.ndarray, test: np.ndarray, alpha: float = ALPHA) -> Agreement:
    """`now` and `test`: per row, the cosine between the two models' outputs."""
    result = ttest_ind(now, test, equal_var=False, alternative="less")
    spread = float(np.sqrt(now.var(ddof=1) / len(now) + test.var(ddof=1) / len(test)))
    if np.isnan(result.pvalue):  # no spread in either: the figures are exact
        p, bound = (1.0 if now.mean() >= test.mean() else 0.0), float(test.mean())
    else:
        p, bound = float(result.pvalue), float(test.mean() - t.ppf(1 - alpha, result.df) * spread)
    return Agreement("cosine", float(now.mean()), len(now), float(test.mean()), len(test), bound, p, p < alpha)


def _is_classifier(metric: Metric, outputs: np.ndarray) -> bool:
    """Scores per class, read by a metric of labels. Embeddings are compared by cosine, and so are regression
    outputs, where for a single output the cosine only says whether the two models agree in sign."""
    return metric.needs_labels and metric.name != "mse" and outputs.ndim == 2


def _agreement(run: OptimizedRun, metric: Metric, original: np.ndarray, optimized: np.ndarray,
               alpha: float) -> Agreement:
    test_x = run.original.data.test.x
    test_original, test_optimized = run.outputs(run.original.model, test_x), run.outputs(run.optimized, test_x)
    if _is_classifier(metric, original):
        same = predicted_labels(original) == predicted_labels(optimized)
        return class_agreement(same, predicted_labels(test_original) == predicted_labels(test_optimized), alpha)
    return cosine_agreement(row_cosines(optimized, original), row_cosines(test_optimized, test_original), alpha)


def _text_drift(run: OptimizedRun, new_embeddings: np.ndarray, alpha: float, seed: int) -> Drift:
    """Texts have no features to test: the original model's embeddings of a seeded subset of the training texts
    against those of the new texts, by MMD."""
    train = run.original.data.train.x
    rows = np.sort(np.random.default_rng(seed).choice(len(train), size=min(MMD_ROWS, len(train)), replace=False))
    reference = run.outputs(run.original.model, train[rows])
    whole = mmd_test(reference, new_embeddings, alpha, seed=seed)
    return Drift(alpha, len(reference), len(new_embeddings), (), whole, whole.drifted)


def _timestamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def monitor(run_dir: str | Path, data: str | Path, task: str | Path | None = None, alpha: float = ALPHA,
            seed: int = 0) -> MonitorResult:
    """Check new data (`data`: a .csv or .npz, texts for a text task) against the optimize run in `run_dir`, and
    write runs/<name>/monitor/<UTC timestamp>/monitor.json and monitor.html."""
    from tradeoff.report.monitor import render_monitor_html

    run = load_run(run_dir, task)
    bundle = run.original.data
    new = read_new_data(data, bundle)
    if len(new.x) < MIN_ROWS:
        raise DataError(f"{new.path} has {len(new.x)} rows; a drift check needs at least {MIN_ROWS}",
                        "collect more rows")
    metric = get_metric(run.original.settings.metric, run.original.search_dirs)
    original, optimized = run.outputs(run.original.model, new.x), run.outputs(run.optimized, new.x)
    if bundle.spec.source == "text":
        drift = _text_drift(run, original, alpha, seed)
    else:
        drift = input_drift(bundle.train.x, new.x, bundle.feature_names, alpha, seed)
    labelled = None
    if new.y is not None and metric.needs_labels:
        labelled = LabelledMetric(metric.name, metric(original, new.y, original), metric(optimized, new.y, original))
    folder = run.run_dir.monitor_dir / _timestamp()
    result = MonitorResult(run.run_dir.root, new.path, drift, _agreement(run, metric, original, optimized, alpha),
                           labelled, folder)

    def fill(tmp: Path) -> None:
        (tmp / result.json_path.name).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        (tmp / result.html_path.name).write_text(render_monitor_html(result))

    write_directory(folder, fill)
    return result
