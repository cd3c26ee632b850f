"""Attributions of two models' decisions and how far they agree: does the optimized model still look at the
features the original looked at?

Integrated gradients (Captum) where both models are differentiable torch modules; otherwise feature ablation (Captum,
over a forward function that runs each model on its own runtime) for both, so the two are always compared with the
same method. Agreement is the Spearman rank correlation of the mean |attribution| per feature, and the overlap of
the top features.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from captum.attr import FeatureAblation, IntegratedGradients
from pydantic import BaseModel, ConfigDict
from scipy.stats import spearmanr

from tradeoff.model import ModelHandle

SAMPLES = 200  # test samples attributed: enough for a stable mean |attribution|, few enough to stay fast
TOP_K = 5
IG_STEPS = 32
ABLATIONS_PER_CALL = 16  # ablated copies of the batch run in one call of the model

Method = Literal["integrated gradients", "feature ablation"]


@dataclass(frozen=True)
class Attributed:
    """A model to attribute: its name in the result, the handle, and its outputs as the search ran it."""

    name: str
    model: ModelHandle
    run: Callable[[np.ndarray], np.ndarray]


class Attributions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Method
    samples: int
    importance: dict[str, list[float]]  # per model: mean |attribution| per feature, in the data's feature order
    spearman: float | None  # None where a model's importances are all equal (no ranking to compare)
    top_k_overlap: float  # share of the first model's TOP_K features among the second's
    top: dict[str, list[str]]  # per model: its TOP_K features, most important first


def sample(x: np.ndarray, seed: int, count: int = SAMPLES) -> np.ndarray:
    """A seeded subset of at most `count` samples of `x`, in their order."""
    if len(x) <= count:
        return x
    return x[np.sort(np.random.default_rng(seed).choice(len(x), size=count, replace=False))]


def compare(first: Attributed, second: Attributed, x: np.ndarray, reference: np.ndarray,
            names: tuple[str, ...]) -> Attributions:
    """Attributions of both models on `x` for the class the first predicts (the same decision, explained twice),
    measured against `reference` (one sample: the training mean), and their agreement."""
    target = torch.as_tensor(first.run(x).argmax(axis=1))
    inputs = torch.as_tensor(np.asarray(x, dtype=np.float32))
    baseline = torch.as_tensor(np.asarray(reference, dtype=np.float32))[None]
    method: Method = ("integrated gradients" if _differentiable(first.model, inputs)
                      and _differentiable(second.model, inputs) else "feature ablation")
    importance = {m.name: _importance(m, method, inputs, baseline, target) for m in (first, second)}
    a, b = importance[first.name], importance[second.name]
    top = {name: [names[i] for i in np.argsort(-values, kind="stable")[:TOP_K]] for name, values in importance.items()}
    constant = np.ptp(a) == 0 or np.ptp(b) == 0
    return Attributions(method=method, samples=len(x), importance={k: v.tolist() for k, v in importance.items()},
                        spearman=None if constant else float(spearmanr(a, b).statistic),
                        top_k_overlap=len(set(top[first.name]) & set(top[second.name])) / len(top[first.name]),
                        top=top)


def _differentiable(model: ModelHandle, inputs: torch.Tensor) -> bool:
    """A torch module whose outputs carry gradients back to its inputs (a torch.ao quantized one does not)."""
    if model.module is None:
        return False
    probe = inputs[:1].clone().requires_grad_(True)
    try:
        return bool(model.module(probe).requires_grad)
    except RuntimeError:
        return False


def _importance(model: Attributed, method: Method, inputs: torch.Tensor, baseline: torch.Tensor,
                target: torch.Tensor) -> np.ndarray:
    if method == "integrated gradients":
        attributions = IntegratedGradients(model.model.module).attribute(  # type: ignore[arg-type]
            inputs, baselines=baseline, target=target, n_steps=IG_STEPS, internal_batch_size=len(inputs))
    else:
        def forward(batch: torch.Tensor) -> torch.Tensor:
            return torch.as_tensor(model.run(batch.detach().numpy()))

        attributions = FeatureAblation(forward).attribute(inputs, baselines=baseline, target=target,
                                                          perturbations_per_eval=ABLATIONS_PER_CALL)
    return attributions.detach().abs().reshape(len(inputs), -1).mean(dim=0).double().numpy()
