"""The Runtime contract: load an artifact once, then run numpy batches through it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import numpy as np

from tradeoff.model import Format, ModelHandle

InferenceFn = Callable[[np.ndarray], np.ndarray]


class Runtime(ABC):
    name: ClassVar[str]
    format: ClassVar[Format]
    in_auto: ClassVar[bool] = True  # whether `runtime: auto` times candidates on it
    needs: ClassVar[str] = ""  # what a machine must have to run it, for the error where it is missing

    @classmethod
    def available(cls) -> bool:
        return True

    @abstractmethod
    def load(self, model: ModelHandle, threads: int) -> InferenceFn:
        """Prepare `model` for inference with `threads` intra-op threads; the result is called per batch."""
