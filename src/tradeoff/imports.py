"""Resolve 'package.module:attribute' references from task files (model factories, datasets, metrics)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from tradeoff.errors import ConfigError


def import_object(reference: str, what: str, search_dirs: tuple[Path, ...] = ()) -> Any:
    """Import `reference`, looking in the working directory and `search_dirs` as a user's script would."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"{what} '{reference}' is not an import path", "write it as 'package.module:name'")
    for directory in (Path.cwd(), *search_dirs):
        if str(directory) not in sys.path:
            sys.path.insert(0, str(directory))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import module '{module_name}' for {what}: {exc}", "check the import path") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ConfigError(f"module '{module_name}' has no '{attribute}' for {what}", "check the name") from None
