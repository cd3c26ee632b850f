"""Data-parallel training under torchrun: which process this is, and the process group DDP needs.

torchrun starts the processes and sets RANK, WORLD_SIZE and LOCAL_RANK; tradeoff only reads them, so one
process (no torchrun) and many run the same code.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """The one process that writes files and reports progress."""
        return self.rank == 0


def world() -> World:
    return World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                 int(os.environ.get("LOCAL_RANK", 0)))


def device_for(given: torch.device, here: World) -> torch.device:
    """Each process drives its own GPU under torchrun; on the CPU they share it."""
    if given.type == "cuda" and here.size > 1:
        return torch.device("cuda", here.local_rank)
    return given


@contextlib.contextmanager
def process_group(here: World, device: torch.device) -> Iterator[None]:
    """The default process group for `here` (gloo on the CPU, nccl on GPUs), created for the training run when
    torchrun started several processes and nobody created it yet, and destroyed after."""
    if here.size == 1 or dist.is_initialized():
        yield
        return
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def mean_over_processes(value: float, here: World) -> float:
    if here.size == 1:
        return value
    total = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(total)
    return float(total) / here.size
