"""PyTorch eager execution: the baseline every user already has."""

from __future__ import annotations

import numpy as np
import torch

from tradeoff.model import ModelHandle
from tradeoff.runtimes.base import InferenceFn, Runtime


class TorchEager(Runtime):
    name = "torch"
    format = "torch"

    def load(self, model: ModelHandle, threads: int) -> InferenceFn:
        torch.set_num_threads(threads)
        module = model.module
        if module is None:
            raise ValueError("TorchEager runs torch models only")
        module.eval()

        def run(batch: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                output = module(torch.from_numpy(np.ascontiguousarray(batch)))
            return output.float().numpy()

        return run
