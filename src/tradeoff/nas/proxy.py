"""Zero-cost proxies: a score of an untrained network from one batch, to rank sampled architectures before any is
trained, so training goes to the candidates likeliest to be good.

NASWOT (Mellor et al. 2021, "Neural Architecture Search without Training"): each sample of the batch leaves a
binary code, which units are active (their activation's input > 0); the log-determinant of the kernel
K[i, j] = units where samples i and j agree is high when the network tells the samples apart from the start.
Synflow (Tanaka et al. 2020, "Pruning neural networks without any data by iteratively conserving synaptic flow"):
the sum over parameters of |theta * dR/dtheta| for R the output sum of the network with every weight made
positive, fed ones; it needs no data, only the input shape, and grows with trainable capacity.

Both are computed on a copy (the caller's module is untouched) and depend on the initial weights, so ranking
builds each candidate after seeding torch.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from tradeoff.data import Split
from tradeoff.errors import ModelError
from tradeoff.inputs import as_tensors
from tradeoff.nas.space import Architecture, ArchitectureSpace
from tradeoff.search.study import random_draws

Proxy = Literal["naswot", "synflow"]
# units whose input sign is their on/off state; a recurrent layer's outputs are read directly
ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.Tanh, nn.Sigmoid, nn.Hardswish)
RECURRENT = (nn.GRU, nn.LSTM, nn.RNN)


def proxy_batch(train: Split, size: int = 64, seed: int = 0) -> np.ndarray:
    """A seeded batch of `size` training samples: the one batch every candidate is scored on."""
    rng = np.random.default_rng(seed)
    return train.x[np.sort(rng.choice(len(train), size=min(size, len(train)), replace=False))]


def naswot(module: nn.Module, batch: np.ndarray) -> float:
    """NASWOT's score of `module` on `batch` (higher ranks first): log|K| of the samples' activation-code
    kernel, summed over every activation module (nn.ReLU, nn.GELU, ...; a functional relu is invisible) and
    recurrent layer. Batch norm normalizes with the batch's statistics, as it does in training."""
    model = copy.deepcopy(module).train()
    codes: list[torch.Tensor] = []

    def record_input(_: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        codes.append((inputs[0] > 0).flatten(1))

    def record_output(_: nn.Module, __: Any, output: Any) -> None:
        codes.append((output[0] > 0).flatten(1))

    for layer in model.modules():
        if isinstance(layer, ACTIVATIONS):
            layer.register_forward_pre_hook(record_input)
        elif isinstance(layer, RECURRENT):
            layer.register_forward_hook(record_output)
    with torch.no_grad():
        model(*as_tensors(batch))
    if not codes:
        raise ModelError(f"naswot reads activation modules and recurrent layers, and {type(module).__name__} has "
                         "none", "use nn.ReLU-style modules rather than functional calls, or the synflow proxy")
    active = torch.cat(codes, dim=1).double()
    kernel = active @ active.T + (1 - active) @ (1 - active).T
    sign, logdet = torch.linalg.slogdet(kernel)
    return float(logdet) if sign > 0 else float("-inf")


def synflow(module: nn.Module, batch: np.ndarray) -> float:
    """Synflow's score of `module` (higher ranks first), in float64 on a copy with every parameter made positive,
    fed ones of one sample's shape from `batch`; batch norm uses its running statistics (eval mode)."""
    model = copy.deepcopy(module).double().eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.abs_()
    ones = torch.ones((1, *as_tensors(batch)[0].shape[1:]), dtype=torch.float64)
    model(ones).sum().backward()
    return sum(float((p.detach() * p.grad).abs().sum()) for p in model.parameters() if p.grad is not None)


SCORES = {"naswot": naswot, "synflow": synflow}


@dataclass(frozen=True)
class Candidate:
    """A sampled architecture and the trial parameters that give it: `study.enqueue_trial(params)` trains it."""

    params: dict[str, Any]
    architecture: Architecture


@dataclass(frozen=True)
class Ranked:
    candidate: Candidate
    score: float


def sample_candidates(space: ArchitectureSpace, count: int, seed: int = 0) -> list[Candidate]:
    """`count` architectures drawn at random from `space` (the real study sees only the ones enqueued)."""
    return [Candidate(params, architecture) for params, architecture in random_draws(space.sample, count, seed)]


def rank_by_proxy(candidates: Sequence[Candidate], batch: np.ndarray, proxy: Proxy = "naswot",
                  seed: int = 0) -> list[Ranked]:
    """`candidates` best first by `proxy` on `batch`, each built after torch.manual_seed(seed) so the ranking is
    reproducible. A candidate whose score is not finite ranks last."""
    ranked = []
    for candidate in candidates:
        torch.manual_seed(seed)
        score = SCORES[proxy](candidate.architecture.build(), batch)
        ranked.append(Ranked(candidate, score if np.isfinite(score) else float("-inf")))
    return sorted(ranked, key=lambda r: -r.score)
