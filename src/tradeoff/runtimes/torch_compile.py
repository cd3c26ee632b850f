"""torch.compile (Inductor) on the CPU: fused kernels for a torch model without leaving torch.

Compiling takes seconds to minutes per model and shape, so `runtime: auto` does not try it on every candidate;
name it as the target (`runtime: {target: torch.compile}`) to search for the best model under it.
"""

from __future__ import annotations

import copy
from typing import ClassVar

import numpy as np
import torch

from tradeoff.inputs import as_tensors
from tradeoff.model import ModelHandle, materialize_parametrizations
from tradeoff.runtimes.base import InferenceFn, Runtime


class TorchCompile(Runtime):
    name = "torch.compile"
    format = "torch"
    in_auto: ClassVar[bool] = False

    def load(self, model: ModelHandle, threads: int) -> InferenceFn:
        torch.set_num_threads(threads)
        if model.module is None:
            raise ValueError("torch.compile runs torch models only")
        module = materialize_parametrizations(copy.deepcopy(model.module)).eval()
        compiled = torch.compile(module, dynamic=None)  # static first, dynamic shapes after a recompile

        def run(batch: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                output = compiled(*as_tensors(batch))
            return output.float().numpy()

        return run
