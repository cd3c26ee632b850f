"""PyTorch eager execution: the baseline every user already has, on the CPU, and on a CUDA GPU when one is here."""

from __future__ import annotations

import copy
from typing import ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from tradeoff.errors import RuntimeBackendError
from tradeoff.inputs import as_tensors
from tradeoff.model import ModelHandle, materialize_parametrizations
from tradeoff.runtimes.base import InferenceFn, Runtime


class TorchEager(Runtime):
    name = "torch"
    format = "torch"
    device: ClassVar[str] = "cpu"

    def load(self, model: ModelHandle, threads: int) -> InferenceFn:
        torch.set_num_threads(threads)
        if model.module is None:
            raise ValueError("TorchEager runs torch models only")
        module = self._placed(model.module)
        module.eval()

        def run(batch: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                output = module(*(t.to(self.device) for t in as_tensors(batch)))
            return output.float().cpu().numpy()  # the copy back waits for the GPU: timings cover the whole call

        return run

    def _placed(self, module: nn.Module) -> nn.Module:
        """The module as it runs here; the caller's module is never moved or changed."""
        if any(parametrize.is_parametrized(m) for m in module.modules()):
            # Shared weights are a storage format: decode them once, as a deployment would, not every call.
            module = materialize_parametrizations(copy.deepcopy(module))
        return module


class TorchCuda(TorchEager):
    """The same eager model on a CUDA GPU, timed from numpy in to numpy out (host-device copies included)."""

    name = "torch.cuda"
    device: ClassVar[str] = "cuda"
    needs: ClassVar[str] = "a CUDA GPU"

    @classmethod
    def available(cls) -> bool:
        return torch.cuda.is_available()

    def _placed(self, module: nn.Module) -> nn.Module:
        if any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in module.modules()):
            raise RuntimeBackendError("torch.ao int8 layers run on the CPU only",
                                      "run this model with runtime: {target: torch}")
        placed = super()._placed(module)
        return (copy.deepcopy(placed) if placed is module else placed).to(self.device)
