"""The training state written after every epoch, so that a killed run continues to the same final weights.

Written to a temporary file and renamed (a kill mid-write leaves the previous epoch's state), read back with
`weights_only=True`: tensors, numbers, strings and containers of them, never arbitrary objects.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from tradeoff.errors import ConfigError


def save_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_state(path: Path, options: dict[str, Any]) -> dict[str, Any]:
    """The state at `path`, refused when it was trained with other options than `options`."""
    try:
        state: dict[str, Any] = torch.load(path, weights_only=True)
    except Exception as exc:  # a truncated or foreign file: pickle, zip or torch errors alike
        raise ConfigError(f"cannot resume from {path}: {str(exc).splitlines()[0]}",
                          "delete it to train from the start") from None
    if state.get("options") != options:
        raise ConfigError(f"cannot resume from {path}: it was trained with other train options",
                          "train with the options it was started with, or delete it to start again")
    return state
