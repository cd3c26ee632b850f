"""Metrics compare a model's outputs with the targets, or with the baseline's own outputs (fidelity)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
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

    def __call__(self, outputs: np.ndarray, targets: np.ndarray, reference: np.ndarray) -> float:
        return float(self.fn(outputs, targets, reference))

    def drop(self, baseline: float, candidate: float) -> float:
        """How much worse the candidate is, in the metric's units (negative when it is better)."""
        return baseline - candidate if self.higher_is_better else candidate - baseline


def _labels(outputs: np.ndarray) -> np.ndarray:
    if outputs.ndim == 1 or outputs.shape[-1] == 1:
        return (outputs.reshape(len(outputs)) > 0).astype(np.int64)
    return outputs.argmax(axis=-1)


def _accuracy(outputs: np.ndarray, targets: np.ndarray, reference: np.ndarray) -> float:
    return float(np.mean(_labels(outputs) == targets))


def _f1_macro(outputs: np.ndarray, targets: np.ndarray, reference: np.ndarray) -> float:
    return float(f1_score(targets, _labels(outputs), average="macro"))


def _mse(outputs: np.ndarray, targets: np.ndarray, reference: np.ndarray) -> float:
    return float(np.mean((outputs.reshape(targets.shape) - targets) ** 2))


def _cosine(outputs: np.ndarray, targets: np.ndarray, reference: np.ndarray) -> float:
    a, b = outputs.reshape(len(outputs), -1), reference.reshape(len(reference), -1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean(np.sum(a * b, axis=1) / np.maximum(norms, 1e-12)))


BUILTIN: dict[str, Metric] = {
    "accuracy": Metric("accuracy", True, _accuracy),
    "f1_macro": Metric("f1_macro", True, _f1_macro),
    "mse": Metric("mse", False, _mse),
    "cosine": Metric("cosine", True, _cosine),
}


def get_metric(spec: str | MetricSpec) -> Metric:
    """A builtin metric by name, or a user's `module:function(outputs, targets) -> float`."""
    if isinstance(spec, str):
        spec = MetricSpec(name=spec)
    if spec.name in BUILTIN:
        return BUILTIN[spec.name]
    if ":" not in spec.name:
        raise ConfigError(f"unknown metric '{spec.name}'",
                          f"use one of {', '.join(BUILTIN)} or an import path 'module:function'")
    user_fn = import_object(spec.name, "metric")
    if spec.higher_is_better is None:
        raise ConfigError(f"metric '{spec.name}' does not say which way is better",
                          "set metric: {name: ..., higher_is_better: true|false}")
    return Metric(spec.name, spec.higher_is_better, lambda outputs, targets, reference: user_fn(outputs, targets))
