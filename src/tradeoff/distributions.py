"""The ranges a parameter can be searched over: what a pass declares for its options and a task file for its space.

Plain values with one method, so passes can declare where their options are worth searching without knowing the
search that samples them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna


@dataclass(frozen=True)
class Choice:
    values: tuple[Any, ...]

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.values))


@dataclass(frozen=True)
class Float:
    low: float
    high: float
    log: bool = False

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return trial.suggest_float(name, self.low, self.high, log=self.log)


@dataclass(frozen=True)
class Int(Float):
    """Whole numbers from `low` to `high`."""

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)


Distribution = Choice | Float | Int
