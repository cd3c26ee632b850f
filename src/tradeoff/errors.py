"""Errors a user can cause. The CLI prints them as one line and exits with code 2; bugs stay tracebacks."""

from __future__ import annotations


class TradeoffError(Exception):
    """A user-facing problem: `message` says what is wrong, `hint` says how to fix it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = _one_line(message)
        self.hint = None if hint is None else _one_line(hint)
        super().__init__(f"{self.message} ({self.hint})" if self.hint else self.message)


def _one_line(text: str) -> str:
    """A user's text quoted in a message (a key named "\\x1e", a path with a line break) shows escaped, so the
    error stays one line."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


class ConfigError(TradeoffError):
    """The task file, a recipe or a pass config is invalid."""


class ModelError(TradeoffError):
    """The model cannot be loaded, exported or transformed."""


class DataError(TradeoffError):
    """The data is missing, empty, or does not fit the model."""


class RuntimeBackendError(TradeoffError):
    """A runtime is unavailable or cannot run the artifact."""
