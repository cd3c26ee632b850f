"""The ranges a parameter can be searched over: what a pass declares for its options and a task file for its space.

Plain values with one method, so passes can declare where their options are worth searching without knowing the
search that samples them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna

from tradeoff.errors import ConfigError


@dataclass(frozen=True)
class Choice:
    values: tuple[Any, ...]

    def suggest(self, trial: optuna.trial.BaseTrial, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.values))

    def address(self, value: Any) -> Any:
        """What a trial records for `value`; None where this range does not hold it."""
        return value if value in self.values else None


@dataclass(frozen=True)
class Float:
    low: float
    high: float
    log: bool = False

    def suggest(self, trial: optuna.trial.BaseTrial, name: str) -> Any:
        return trial.suggest_float(name, self.low, self.high, log=self.log)

    def address(self, value: Any) -> Any:
        return value if isinstance(value, int | float) and self.low <= value <= self.high else None


@dataclass(frozen=True)
class Int(Float):
    """Whole numbers from `low` to `high`."""

    def suggest(self, trial: optuna.trial.BaseTrial, name: str) -> Any:
        return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)


@dataclass(frozen=True)
class Kept:
    """The first k layers of a ranking (the most sensitive first), k from 0 to `most`: the layers a step leaves
    alone. The trial records k; the recipe holds the layers' names, so it replays without the ranking."""

    ranking: tuple[str, ...]
    most: int

    def suggest(self, trial: optuna.trial.BaseTrial, name: str) -> Any:
        return self.value_of(trial.suggest_int(name, 0, min(self.most, len(self.ranking))))

    def address(self, value: Any) -> Any:
        kept = tuple(value)
        return len(kept) if len(kept) <= self.most and kept == self.ranking[:len(kept)] else None

    def value_of(self, raw: Any) -> tuple[str, ...]:
        """The layers a trial's recorded k (or a recipe's list of layers) stands for."""
        return self.ranking[:raw] if isinstance(raw, int) else tuple(raw)


Range = Choice | Float | Int  # what a task file's range can be
Distribution = Range | Kept


def parse_range(name: str, raw: Any, section: str = "search.space") -> Range:
    """A task file's range: {low, high[, log]} (ints give an Int), a list of choices, or one fixed value."""
    if isinstance(raw, Mapping):
        if set(raw) - {"low", "high", "log"} or not {"low", "high"} <= set(raw):
            raise ConfigError(f"{section}.{name} must be {{low, high}} (optionally log: true), a list of "
                              f"choices or one value, got {dict(raw)}")
        low, high, log = raw["low"], raw["high"], bool(raw.get("log", False))
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)) or low > high:
            raise ConfigError(f"{section}.{name} needs numbers with low <= high, got {low} and {high}")
        if log and low <= 0:
            raise ConfigError(f"{section}.{name} is on a log scale, so low must be above 0, got {low}")
        return Int(low, high, log) if isinstance(low, int) and isinstance(high, int) else Float(low, high, log)
    if isinstance(raw, list | tuple):
        if not raw:
            raise ConfigError(f"{section}.{name} lists no choices", "give at least one value")
        return Choice(tuple(raw))
    return Choice((raw,))
