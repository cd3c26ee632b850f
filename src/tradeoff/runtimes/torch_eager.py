"""PyTorch eager execution: the baseline every user already has."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch.nn.utils import parametrize

from tradeoff.inputs import as_tensors
from tradeoff.model import ModelHandle, materialize_parametrizations
from tradeoff.runtimes.base import InferenceFn, Runtime


class TorchEager(Runtime):
    name = "torch"
    format = "torch"

    def load(self, model: ModelHandle, threads: int) -> InferenceFn:
        torch.set_num_threads(threads)
        if model.module is None:
            raise ValueError("TorchEager runs torch models only")
        module = model.module
        if any(parametrize.is_parametrized(m) for m in module.modules()):
            # Shared weights are a storage format: decode them once, as a deployment would, not every call.
            module = materialize_parametrizations(copy.deepcopy(module))
        module.eval()

        def run(batch: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                output = module(*as_tensors(batch))
            return output.float().numpy()

        return run
