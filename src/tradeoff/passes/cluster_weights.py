"""cluster.weights: weight sharing by per-layer k-means (Deep Compression), then fine-tune the centroids.

Each layer's weight becomes `codebook[indices]` through a torch parametrization: training moves only the
2^bits centroids (each gets the summed gradient of its members), and the saved artifact holds uint8
indices plus a small codebook instead of float32 weights.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
from pydantic import Field
from sklearn.cluster import KMeans
from torch import nn
from torch.nn.utils import parametrize

from tradeoff.distributions import Int
from tradeoff.errors import ModelError
from tradeoff.model import ModelHandle
from tradeoff.passes.base import Context, FinetuneConfig, Pass, register
from tradeoff.passes.prune_magnitude import prunable_weights


class ClusterConfig(FinetuneConfig):
    bits: int = Field(default=4, ge=1, le=8)
    keep_zeros: bool = True
    lr: float = Field(default=1e-4, gt=0.0)  # centroids move gently: each one carries many weights


class SharedWeights(nn.Module):
    """weight = codebook[indices]; `right_inverse` hands the codebook to torch as the trainable original."""

    def __init__(self, indices: torch.Tensor, codebook: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("indices", indices.to(torch.uint8))
        self._codebook = codebook

    def forward(self, codebook: torch.Tensor) -> torch.Tensor:
        return codebook[cast(torch.Tensor, self.indices).long()]

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        return self._codebook


def _share(layer: nn.Module, indices: torch.Tensor, codebook: torch.Tensor) -> None:
    parametrize.register_parametrization(layer, "weight", SharedWeights(indices, codebook), unsafe=True)


def _kmeans(weight: np.ndarray, clusters: int, keep_zeros: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Linear-initialised 1-D k-means (Han et al. found linear init keeps the rare large weights)."""
    values = weight.reshape(-1, 1)
    candidates = values[values[:, 0] != 0] if keep_zeros else values
    count = min(clusters - int(keep_zeros), len(np.unique(candidates)))
    init = np.linspace(candidates.min(), candidates.max(), count).reshape(-1, 1)
    fitted = KMeans(n_clusters=count, init=init, n_init=1, random_state=seed).fit(candidates)
    centroids = fitted.cluster_centers_[:, 0]
    if keep_zeros:
        centroids = np.concatenate([[0.0], centroids])
    indices = np.abs(values - centroids.reshape(1, -1)).argmin(axis=1)
    if keep_zeros:
        indices[values[:, 0] == 0] = 0
    return indices.reshape(weight.shape), centroids


@register
class WeightClustering(Pass[ClusterConfig]):
    name = "cluster.weights"
    stage = "cluster"
    tags = frozenset({"size", "retrains"})
    accepts = frozenset({"torch"})
    space = {"bits": Int(3, 6)}

    def transform(self, model: ModelHandle, ctx: Context) -> ModelHandle:
        config = self.config
        module = model.torch_module()
        layers = {name: m for name, m in module.named_modules() if any(m is t for t, _ in prunable_weights(module))}
        if not layers or any(parametrize.is_parametrized(m, "weight") for m in layers.values()):
            raise ModelError("cluster.weights needs Linear or Conv layers whose weights are not already shared",
                             "apply it once, to a model with nn.Linear or nn.ConvNd layers")
        for layer in layers.values():
            weight = cast(torch.Tensor, layer.weight).detach()
            indices, centroids = _kmeans(weight.numpy(), 2**config.bits, config.keep_zeros, ctx.seed)
            _share(layer, torch.from_numpy(indices), torch.tensor(centroids, dtype=weight.dtype))
        codebooks = [cast(Any, layer).parametrizations.weight.original for layer in layers.values()]

        def pin_zero_centroid() -> None:
            with torch.no_grad():
                for codebook in codebooks:
                    codebook[0] = 0.0

        ctx.trainer.finetune(module, ctx, config, after_step=pin_zero_centroid if config.keep_zeros else None)
        state = {name: 2**config.bits for name in layers}
        return model.with_module(module, structure_step=self.step(), structure_state={"layers": state})

    def restructure(self, module: nn.Module, state: dict[str, Any]) -> nn.Module:
        modules = dict(module.named_modules())
        for name, clusters in state["layers"].items():
            weight = cast(torch.Tensor, modules[name].weight)
            _share(modules[name], torch.zeros(weight.shape, dtype=torch.uint8), torch.zeros(clusters))
        return module
