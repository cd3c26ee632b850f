"""Metrics compare a model's outputs with the targets, or with the baseline's own outputs (fidelity)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import f1_score

from tradeoff.config import MetricSpec
from tradeoff.errors import ConfigError
from tradeoff.imports import import_object

# (outputs, targets, reference outputs of the baseline on the same inputs) -> score
MetricFn = Callable[[np.ndarray, np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    fn: MetricFn
    needs_labels: bool = True  # fidelity metrics compare with the baseline's outputs and need none

    def __call__(self, outputs: np.ndarray, targets: np.ndarray, reference: np.ndarray) -> float:
        return float(self.fn(outputs, targets, reference))

    def drop(self, baseline: float, candidate: float) -> float:
        """How much worse the candidate is, in the metric's units (negative when it is better)."""
        return baseline - candidate if self.higher_is_better else candidate - baseline


def predicted_labels(outputs: np.ndarray) -> np.ndarray:
    """The class each row of scores picks: the argmax, or the sign of a single logit."""
    if outputs.ndim == 1 or outputs.shape[-1] == 1:
        return (outputs.reshape(len(outputs)) > 0).astype(np.int64)
    return outputs.argmax(axis=-1)


def _accuracy(outputs: np.ndarray, targets: np.ndarray, reference: np.ndarray) -> float:
    return float(np.mean(predicted_labels(outputs) == targets))


def _f1_macro(outputs: np.ndarray, targets: np.ndarray, reference: np.ndarray) -> float:
    return float(f1_score(targets, predicted_labels(outputs), average="macro"))


def _mse(outputs: np.ndarray, targets: np.ndarray, reference: np.ndarray) -> float:
    return float(np.mean((outputs.reshape(targets.shape) - targets) ** 2))


def _rows(outputs: np.ndarray) -> np.ndarray:
    flat = outputs.reshape(len(outputs), -1).astype(np.float64)
    return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)


def row_cosines(outputs: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return np.sum(_rows(outputs) * _rows(reference), axis=1)


def _cosine(outputs: np.ndarray, targets: np.ndarray, reference: np.ndarray) -> float:
    return float(np.mean(row_cosines(outputs, reference)))


def _cosine_min(outputs: np.ndarray, targets: np.ndarray, reference: np.ndarray) -> float:
    return float(np.min(row_cosines(outputs, reference)))


def _similarity_matrix(outputs: np.ndarray) -> np.ndarray:
    unit = _rows(outputs)
    return unit @ unit.T


def _similarities(outputs: np.ndarray) -> np.ndarray:
    return _similarity_matrix(outputs)[np.triu_indices(len(outputs), k=1)]


def _spearman(outputs: np.ndarray, targets: np.ndarray, reference: np.ndarray) -> float:
    """Rank agreement of all pairwise similarities with the baseline's: does the model still order pairs alike."""
    return float(spearmanr(_similarities(outputs), _similarities(reference)).statistic)


def _nearest(embeddings: np.ndarray, k: int) -> np.ndarray:
    """Each text as a query against all the others: the indices of its k most similar, best first."""
    scores = _similarity_matrix(embeddings)
    np.fill_diagonal(scores, -np.inf)
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def _recall_at(k: int) -> MetricFn:
    def recall(outputs: np.ndarray, targets: np.ndarray, reference: np.ndarray) -> float:
        """The share of the baseline's k nearest neighbours of each text that the model also ranks top k."""
        found, expected = _nearest(outputs, k), _nearest(reference, k)
        return float(np.mean([len(np.intersect1d(a, b)) / k for a, b in zip(found, expected, strict=True)]))

    return recall


def _ndcg_at(k: int) -> MetricFn:
    def ndcg(outputs: np.ndarray, targets: np.ndarray, reference: np.ndarray) -> float:
        """NDCG of the model's k nearest neighbours of each text, graded by the baseline's similarities:
        unlike recall, swapping a near-tie costs little and losing the best match costs much."""
        relevance = np.clip(_similarity_matrix(reference), 0.0, None)
        discounts = 1.0 / np.log2(np.arange(2, k + 2))
        gained = np.take_along_axis(relevance, _nearest(outputs, k), axis=1) @ discounts
        ideal = np.take_along_axis(relevance, _nearest(reference, k), axis=1) @ discounts
        return float(np.mean(gained / np.maximum(ideal, 1e-12)))

    return ndcg


RETRIEVAL: dict[str, Callable[[int], MetricFn]] = {"recall": _recall_at, "ndcg": _ndcg_at}


BUILTIN: dict[str, Metric] = {
    "accuracy": Metric("accuracy", True, _accuracy),
    "f1_macro": Metric("f1_macro", True, _f1_macro),
    "mse": Metric("mse", False, _mse),
    "cosine": Metric("cosine", True, _cosine, needs_labels=False),
    "cosine_min": Metric("cosine_min", True, _cosine_min, needs_labels=False),
    "spearman": Metric("spearman", True, _spearman, needs_labels=False),
}


@dataclass(frozen=True)
class Chance:
    """What guessing scores on a split's targets, what that guess is, and what a perfect model scores."""

    score: Callable[[np.ndarray], float]
    guess: str
    perfect: float


CHANCE: dict[str, Chance] = {  # the builtin metrics that compare with targets
    "accuracy": Chance(lambda y: float(np.unique(y, return_counts=True)[1].max() / len(y)),
                       "the majority class's share", 1.0),
    "f1_macro": Chance(lambda y: 1 / len(np.unique(y)), "one over the number of classes", 1.0),
    "mse": Chance(lambda y: float(np.var(y)), "predicting the targets' mean", 0.0),
}
CHANCE_MARGIN = 0.1  # a score less than a tenth of the way from chance to perfect is near chance


def near_chance_warnings(metric: Metric, score: float, targets: np.ndarray) -> list[str]:
    """A warning when the baseline's validation `score` is about what guessing `targets` would score: its outputs
    are then likely read wrongly (a label output taken for scores, inputs scaled unlike in training), and every
    figure compared with it is noise."""
    rule = CHANCE.get(metric.name)
    if rule is None or len(targets) == 0:
        return []
    chance = rule.score(targets)
    if chance == rule.perfect or (score - chance) / (rule.perfect - chance) >= CHANCE_MARGIN:
        return []
    return [f"the baseline's {metric.name} on validation ({score:.4g}) is near chance ({chance:.4g}, {rule.guess}): "
            "check that the model's output holds scores for these targets (model.output, for ONNX) and that the "
            "inputs are prepared as in training"]


def get_metric(spec: str | MetricSpec, search_dirs: tuple[Path, ...] = ()) -> Metric:
    """A builtin metric by name, or a user's `module:function(outputs, targets) -> float` (found in `search_dirs`,
    the task file's folder, first)."""
    if isinstance(spec, str):
        spec = MetricSpec(name=spec)
    if spec.name in BUILTIN:
        return BUILTIN[spec.name]
    retrieval = re.fullmatch(rf"({'|'.join(RETRIEVAL)})@(\d+)", spec.name)
    if retrieval and int(retrieval.group(2)) >= 1:
        return Metric(spec.name, True, RETRIEVAL[retrieval.group(1)](int(retrieval.group(2))), needs_labels=False)
    if ":" not in spec.name:
        raise ConfigError(f"unknown metric '{spec.name}'",
                          f"use one of {', '.join(BUILTIN)}, recall@k, ndcg@k or an import path 'module:function'")
    user_fn = import_object(spec.name, "metric", search_dirs)
    higher = spec.higher_is_better if spec.higher_is_better is not None else getattr(user_fn, "higher_is_better", None)
    if not isinstance(higher, bool):  # a guessed direction would optimize the wrong way without a word
        raise ConfigError(f"metric '{spec.name}' does not say which way is better",
                          "set metric: {name: ..., higher_is_better: true|false}, or give the function an attribute "
                          "higher_is_better = True|False")
    return Metric(spec.name, higher, lambda outputs, targets, reference: user_fn(outputs, targets))
