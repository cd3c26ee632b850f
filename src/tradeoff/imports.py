"""Resolve the code a task file names (model and data factories, metrics, plugins) the way the task's author sees
it: from the task file's folder first, then the working directory, then the installed packages."""

from __future__ import annotations

import importlib
import sys
from importlib.machinery import ModuleSpec, PathFinder
from pathlib import Path
from types import ModuleType
from typing import Any

from tradeoff.errors import ConfigError


def import_module(name: str, what: str, search_dirs: tuple[Path, ...] = ()) -> ModuleType:
    """Import module `name` for `what` (e.g. "model.factory"), a module in `search_dirs` or the working directory
    winning over a same-named one a library put on the import path: onnxruntime.transformers appends its folder,
    which holds a package called `models`, to sys.path."""
    folders = (*search_dirs, Path.cwd())
    top = name.partition(".")[0]
    for folder in folders:
        spec = PathFinder.find_spec(top, [str(folder)])
        if spec is not None and spec.origin is not None:  # a namespace portion (a plain folder) never shadows
            _prefer(folder, spec)
            break
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {what} module '{name}': {exc}",
                          f"looked in {', '.join(str(f) for f in dict.fromkeys(folders))} and the installed "
                          "packages") from None


def _prefer(folder: Path, spec: ModuleSpec) -> None:
    """Make the next import of `spec.name` load it from `folder`: that folder first on sys.path, and a module of
    the same name loaded from elsewhere (with its submodules) forgotten."""
    loaded = sys.modules.get(spec.name)
    if loaded is not None and getattr(loaded.__spec__, "origin", None) != spec.origin:
        for key in [k for k in sys.modules if k == spec.name or k.startswith(f"{spec.name}.")]:
            del sys.modules[key]
    entry = str(folder)
    if entry in sys.path:
        sys.path.remove(entry)
    sys.path.insert(0, entry)


def import_object(reference: str, what: str, search_dirs: tuple[Path, ...] = ()) -> Any:
    """The attribute a `module:attribute` reference names, its module imported as `import_module` does."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"{what} '{reference}' is not an import path", "write it as 'package.module:name'")
    module = import_module(module_name, what, search_dirs)
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ConfigError(f"module '{module_name}' ({module.__file__}) has no '{attribute}' for {what}",
                          "check the name") from None
