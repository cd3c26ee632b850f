"""Errors a user can cause. The CLI prints them as one line and exits with code 2; bugs stay tracebacks."""

from __future__ import annotations


class TradeoffError(Exception):
    """A user-facing problem: `message` says what is wrong, `hint` says how to fix it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message} ({hint})" if hint else message)


class ConfigError(TradeoffError):
    """The task file, a recipe or a pass config is invalid."""


class ModelError(TradeoffError):
    """The model cannot be loaded, exported or transformed."""


class DataError(TradeoffError):
    """The data is missing, empty, or does not fit the model."""


class RuntimeBackendError(TradeoffError):
    """A runtime is unavailable or cannot run the artifact."""
