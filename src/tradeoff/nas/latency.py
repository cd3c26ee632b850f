"""A latency table: each block of a network timed once on the target runtime, the sum predicting the whole.

A search samples hundreds of networks built from a few dozen distinct blocks (a conv of given channels, kernel and
stride on an input of given shape); timing each distinct block once and summing predicts a network's latency in
milliseconds without building and timing it whole, so a latency ceiling can reject a candidate before it is
trained. Every block's timing includes the runtime's fixed per-call cost (input conversion, dispatch), which a
whole network pays once: the table times an identity call on the network's input and subtracts that cost for all
blocks but one. `check` compares a prediction with a real measurement of the whole network.

Blocks are what a network's forward calls in sequence: the children of the model and of every nn.Sequential in
it, each timed on the input it really receives (recorded by hooks during one forward). A model whose forward does
more between its children than reshaping (two branches, a loop) is predicted wrongly; `check` shows by how much.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from tradeoff.errors import ConfigError
from tradeoff.inputs import as_tensors
from tradeoff.measure import measure_latency
from tradeoff.model import ModelHandle
from tradeoff.runtimes import RUNTIMES


def blocks(module: nn.Module) -> list[nn.Module]:
    """The modules `module`'s forward runs one after another: its children, nn.Sequential ones opened up."""
    found: list[nn.Module] = []
    for child in module.children():
        found.extend(blocks(child) if isinstance(child, nn.Sequential) else [child])
    return found


def _block_inputs(module: nn.Module, batch: np.ndarray) -> list[tuple[nn.Module, np.ndarray]]:
    """Each block with the input it receives when `module` runs on `batch` (the first call, if it runs twice)."""
    seen: dict[int, tuple[nn.Module, np.ndarray]] = {}

    def record(block: nn.Module, inputs: tuple[Any, ...]) -> None:
        if id(block) not in seen and inputs and isinstance(inputs[0], torch.Tensor):
            seen[id(block)] = (block, inputs[0].detach().numpy().copy())

    model = module.eval()
    chain = blocks(model)
    handles = [b.register_forward_pre_hook(record) for b in chain]
    try:
        with torch.inference_mode():
            model(*as_tensors(batch))
    finally:
        for handle in handles:
            handle.remove()
    return [seen[id(b)] for b in chain if id(b) in seen]


class _FirstOutput(nn.Module):
    """A block whose output is a tuple (a GRU's output and state) timed as its first tensor, which the runtime
    hands back."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output = self.block(x)
        return output[0] if isinstance(output, tuple) else output


@dataclass(frozen=True)
class LatencyCheck:
    predicted_ms: float
    measured_ms: float

    @property
    def relative_error(self) -> float:
        """(predicted - measured) / measured: positive when the table overestimates."""
        return (self.predicted_ms - self.measured_ms) / self.measured_ms


@dataclass
class LatencyTable:
    """Median milliseconds per distinct block (its repr, which names its configuration, and its input shape), on
    `runtime` (a torch-format tradeoff runtime: torch, torch.compile, torch.cuda) with `threads` threads, each
    timed for `budget_s` seconds after a short warm-up. Entries persist across predictions: a block seen in an
    earlier candidate is not timed again."""

    runtime: str = "torch"
    threads: int = 1
    budget_s: float = 0.2
    entries: dict[tuple[str, tuple[int, ...]], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        runtime = RUNTIMES.get(self.runtime)
        if runtime is None or runtime.format != "torch":
            torch_runtimes = [name for name, cls in RUNTIMES.items() if cls.format == "torch"]
            raise ConfigError(f"the latency table times torch blocks, and '{self.runtime}' is not a torch runtime",
                              f"use one of {', '.join(torch_runtimes)}, or measure ONNX candidates whole")

    def _time(self, module: nn.Module, batch: np.ndarray) -> float:
        run = RUNTIMES[self.runtime]().load(ModelHandle(module=module), self.threads)
        return measure_latency(run, batch, self.threads, warmup_s=0.05, budget_s=self.budget_s).p50_ms

    def _entry(self, block: nn.Module, batch: np.ndarray) -> float:
        key = (repr(block), tuple(batch.shape))
        if key not in self.entries:
            self.entries[key] = self._time(_FirstOutput(copy.deepcopy(block)), batch)
        return self.entries[key]

    def predict(self, module: nn.Module, batch: np.ndarray) -> float:
        """Predicted p50 milliseconds of `module` on `batch`: its blocks' entries (timed where new) summed, less
        the per-call cost for all blocks but one."""
        timed = [self._entry(block, inputs) for block, inputs in _block_inputs(module, batch)]
        if not timed:
            raise ConfigError(f"{type(module).__name__} has no child modules to time", "give a model built of blocks")
        call = self._entry(nn.Identity(), batch)
        return max(sum(timed) - call * (len(timed) - 1), call)

    def check(self, module: nn.Module, batch: np.ndarray) -> LatencyCheck:
        """The prediction against a real measurement of the whole `module` on the same runtime and input."""
        predicted = self.predict(module, batch)
        return LatencyCheck(predicted, self._time(module, batch))
