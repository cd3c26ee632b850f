"""Turn pydantic validation errors into one-line messages that name the key, the value and the fix."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from tradeoff.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def _field_names(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Fields allowed at `loc` (the parent of the offending key), following nested models."""
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return []
        annotation = fields[part].annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        current = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if current is None:
            return []
    return list(current.model_fields)


def validate(model: type[M], data: Any, where: str) -> M:
    """Validate `data` as `model`, raising a ConfigError about the first problem found."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = tuple(error["loc"])
        path = ".".join(str(p) for p in loc) or "(top level)"
        if error["type"] == "extra_forbidden":
            key = str(loc[-1])
            allowed = _field_names(model, loc[:-1])
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"allowed keys: {', '.join(allowed)}"
            raise ConfigError(f"unknown key '{path}' in {where}", hint) from None
        if error["type"] == "missing":
            raise ConfigError(f"missing key '{path}' in {where}", "add it") from None
        raise ConfigError(
            f"invalid value for '{path}' in {where}: {error['msg']} (got {error.get('input')!r})"
        ) from None


def read_yaml(path: Path, what: str) -> Any:
    """A user's YAML file, with a one-line error when it is missing or malformed."""
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}", "check the path")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
