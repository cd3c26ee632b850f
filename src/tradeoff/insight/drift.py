"""Input drift: does new data come from the distribution the model was trained on?

Tabular data (one axis, at most MANY_FEATURES values a sample) is tested two ways, each at half of ALPHA so that
the chance of any false alarm on undrifted data stays at most ALPHA (Bonferroni over the two):
- feature by feature against the training split: the two-sample Kolmogorov-Smirnov test for a continuous feature,
  the chi-squared test of the two samples' value counts for a discrete one (at most DISCRETE_MAX_VALUES distinct
  training values), Holm-corrected over the features; uncorrected, 30 features at 0.05 would alarm on
  1 - 0.95^30 = 79% of undrifted samples. These say which features moved.
- the rows as a whole (each feature standardized by the training split): the MMD test below. It sees what no single
  feature shows clearly on a few dozen rows (noise added to every feature, a class gone): on wine's 53 held-out rows
  (20 seeded splits) the corrected per-feature tests alone caught noise of one standard deviation on 6 and the
  missing class on 13, the two together on all 20.
Each feature also gets its population stability index (PSI), the industry's measure of how far a distribution
moved, read in the usual bands: below 0.1 stable, 0.1 to 0.25 moderate, above 0.25 major. PSI is reported, not
tested: it has no sampling distribution and is biased upward on small samples (about (bins - 1) / rows on
undrifted data, 0.18 for 50 rows in 10 bins), so the verdict rests on the tests.

Images and embeddings (a sample with more than one axis, or more than MANY_FEATURES values) are tested as a whole
only, at ALPHA, because their single values are not features a user reads and a correction over hundreds of pixels
leaves each test no power: the maximum mean discrepancy (MMD) with a Gaussian kernel whose width is the median
distance between the pooled samples, and a permutation p-value.

Everything is seeded: the same data gives the same verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.stats import chi2_contingency, ks_2samp
from sklearn.metrics.pairwise import euclidean_distances

ALPHA = 0.05  # the chance of a false alarm on undrifted data, for the whole check (every test together)
PSI_MODERATE, PSI_MAJOR = 0.1, 0.25  # PSI bands: stable below 0.1, a moderate shift to 0.25, a major one above
PSI_BINS = 10  # a continuous feature's PSI compares the shares of rows in the training split's deciles
DISCRETE_MAX_VALUES = 10  # a feature with this many distinct training values or fewer is tested as categories
MANY_FEATURES = 50  # samples with more values than this (or more than one axis) are tested as a whole only
PERMUTATIONS = 500  # of the MMD test: its smallest p-value is 1 / 501
MMD_ROWS = 1000  # at most this many rows of each sample enter the MMD test (a seeded subset): the kernel is rows^2
BANDWIDTH_ROWS = 300  # the median heuristic reads the distances among this many of the pooled rows
PSI_FLOOR = 1e-4  # an empty bin's share, so that PSI stays finite

PsiBand = Literal["stable", "moderate", "major"]


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    test: Literal["ks", "chi2"]
    statistic: float  # KS: the largest gap between the two empirical distribution functions; chi2: chi-squared
    p_value: float
    p_holm: float  # corrected for testing every feature (Holm): the feature drifted when this is below alpha
    drifted: bool
    psi: float
    psi_band: PsiBand


@dataclass(frozen=True)
class MultivariateDrift:
    test: Literal["mmd"]
    statistic: float  # MMD^2 (biased estimate) between the two samples
    p_value: float  # permutation p-value: the share of label shuffles whose MMD^2 is at least as large
    level: float  # drift when p_value is below this: alpha for images and embeddings, alpha / 2 for tabular data
    bandwidth: float  # the Gaussian kernel's width (median heuristic)
    permutations: int
    reference_rows: int
    rows: int
    drifted: bool


@dataclass(frozen=True)
class Drift:
    alpha: float
    reference_rows: int
    rows: int
    features: tuple[FeatureDrift, ...]  # tabular data; empty for images and embeddings
    whole: MultivariateDrift  # the rows as a whole
    drifted: bool

    @property
    def method(self) -> str:
        whole = (f"MMD of the whole rows (Gaussian kernel, median heuristic, {self.whole.permutations} permutations) "
                 f"at p < {self.whole.level:g}")
        if not self.features:
            return whole
        return (f"{whole}; per feature Kolmogorov-Smirnov (continuous) or chi-squared (at most {DISCRETE_MAX_VALUES} "
                f"values), Holm-corrected over {len(self.features)} features, at p < {self.alpha / 2:g}; PSI reported")


def psi_band(value: float) -> PsiBand:
    return "stable" if value < PSI_MODERATE else "moderate" if value < PSI_MAJOR else "major"


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down correction: it controls the family-wise error rate like Bonferroni's and rejects at least
    as often. scipy has only Benjamini-Hochberg (a false discovery rate, not the chance of any false alarm)."""
    order = np.argsort(p_values)
    scaled = (len(p_values) - np.arange(len(p_values))) * p_values[order]
    adjusted = np.empty_like(p_values)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


def psi(reference: np.ndarray, new: np.ndarray, discrete: bool) -> float:
    """Population stability index, sum over bins of (new share - reference share) * ln(new share / reference
    share): bins are the reference's deciles for a continuous feature, its values for a discrete one. Written here:
    no well-kept library computes it (it is three lines of numpy)."""
    if discrete:
        values = np.union1d(reference, new)
        ref_counts = np.array([np.sum(reference == v) for v in values])
        new_counts = np.array([np.sum(new == v) for v in values])
    else:
        edges = np.unique(np.quantile(reference, np.linspace(0, 1, PSI_BINS + 1))[1:-1])
        ref_counts = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1)
        new_counts = np.bincount(np.searchsorted(edges, new, side="right"), minlength=len(edges) + 1)
    ref_share = np.maximum(ref_counts / len(reference), PSI_FLOOR)
    new_share = np.maximum(new_counts / len(new), PSI_FLOOR)
    return float(np.sum((new_share - ref_share) * np.log(new_share / ref_share)))


def _chi2(reference: np.ndarray, new: np.ndarray) -> tuple[float, float]:
    values = np.union1d(reference, new)
    if len(values) < 2:
        return 0.0, 1.0  # one value in both samples: nothing moved
    table = np.array([[np.sum(sample == v) for v in values] for sample in (reference, new)])
    result = chi2_contingency(table)
    return float(result.statistic), float(result.pvalue)


def feature_drift(reference: np.ndarray, new: np.ndarray, names: Sequence[str] | None = None,
                  alpha: float = ALPHA) -> tuple[FeatureDrift, ...]:
    """Each column of `new` (rows x features) tested against the same column of `reference`, Holm-corrected."""
    names = list(names) if names is not None else [f"feature {i}" for i in range(reference.shape[1])]
    discrete = [len(np.unique(column)) <= DISCRETE_MAX_VALUES for column in reference.T]
    ks = ks_2samp(reference, new, axis=0)
    tests = [_chi2(reference[:, i], new[:, i]) if discrete[i] else (float(ks.statistic[i]), float(ks.pvalue[i]))
             for i in range(reference.shape[1])]
    p_values = np.nan_to_num(np.array([p for _, p in tests]), nan=1.0)  # constant in both samples: no evidence
    corrected = holm(p_values)
    features = []
    for i, name in enumerate(names):
        value = psi(reference[:, i], new[:, i], discrete[i])
        features.append(FeatureDrift(name, "chi2" if discrete[i] else "ks", tests[i][0], float(p_values[i]),
                                     float(corrected[i]), bool(corrected[i] < alpha), value, psi_band(value)))
    return tuple(features)


def _subset(x: np.ndarray, rows: int, rng: np.random.Generator) -> np.ndarray:
    return x if len(x) <= rows else x[np.sort(rng.choice(len(x), size=rows, replace=False))]


def _median_squared_distance(pooled: np.ndarray, rng: np.random.Generator) -> float:
    """The median heuristic's squared width, from the distances between BANDWIDTH_ROWS of the pooled rows (seeded):
    the median of a few ten thousand distances is as good as that of millions, and much cheaper."""
    some = _subset(pooled, BANDWIDTH_ROWS, rng)
    squared = euclidean_distances(some, squared=True)[np.triu_indices(len(some), k=1)]
    positive = squared[squared > 0]
    return float(np.median(positive)) if len(positive) else 1.0


def mmd_test(reference: np.ndarray, new: np.ndarray, alpha: float = ALPHA, permutations: int = PERMUTATIONS,
             seed: int = 0) -> MultivariateDrift:
    """Two-sample test on whole samples (any shape; flattened). Written here because the libraries that have it
    (alibi-detect, torchdrift) bring a deep-learning backend and their own pins for a test that is a kernel matrix
    and a few hundred reweightings of it; the permutation p-value is exact at any sample size, where MMD's
    asymptotic null is not."""
    rng = np.random.default_rng(seed)
    x = _subset(reference.reshape(len(reference), -1).astype(np.float64), MMD_ROWS, rng)
    y = _subset(new.reshape(len(new), -1).astype(np.float64), MMD_ROWS, rng)
    pooled = np.concatenate([x, y])
    squared = euclidean_distances(pooled, squared=True).astype(np.float32)
    width_squared = _median_squared_distance(pooled, rng)
    kernel = np.exp(squared / np.float32(-2 * width_squared))
    # MMD^2 = w' K w with w = 1/m on the reference's rows and -1/n on the new ones; a shuffle permutes w
    weights = np.where(np.arange(len(pooled)) < len(x), 1 / len(x), -1 / len(y))
    shuffled = np.stack([weights, *(rng.permutation(weights) for _ in range(permutations))]).astype(np.float32)
    statistics = np.sum((shuffled @ kernel) * shuffled, axis=1)  # the data's own labels first, then the shuffles
    observed, null = float(statistics[0]), statistics[1:]
    p_value = float((1 + np.sum(null >= observed)) / (1 + permutations))
    return MultivariateDrift("mmd", observed, p_value, alpha, float(np.sqrt(width_squared)), permutations, len(x),
                             len(y), p_value < alpha)


def is_multivariate(sample_shape: tuple[int, ...]) -> bool:
    """Images and embeddings, whose single values are no features a user reads."""
    return len(sample_shape) > 1 or int(np.prod(sample_shape)) > MANY_FEATURES


def input_drift(reference: np.ndarray, new: np.ndarray, names: Sequence[str] | None = None, alpha: float = ALPHA,
                seed: int = 0) -> Drift:
    """`new` rows against the `reference` (the training split), by the tests that suit the shape of a sample."""
    if is_multivariate(reference.shape[1:]):
        whole = mmd_test(reference, new, alpha, seed=seed)
        return Drift(alpha, len(reference), len(new), (), whole, whole.drifted)
    table, rows = reference.reshape(len(reference), -1), new.reshape(len(new), -1)
    mean, spread = table.mean(axis=0), table.std(axis=0)
    spread = np.where(spread > 0, spread, 1.0)
    whole = mmd_test((table - mean) / spread, (rows - mean) / spread, alpha / 2, seed=seed)
    features = feature_drift(table, rows, names, alpha / 2)
    return Drift(alpha, len(reference), len(new), features, whole, whole.drifted or any(f.drifted for f in features))
