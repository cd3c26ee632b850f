"""The Pass contract and the one registry that recipes, presets and the search resolve passes through.

A pass declares facts about itself (its stage in a recipe, the formats it takes and makes, the traits its output
gains or its input must not have, tags that presets select by, where its options are worth searching); everything
that needs a catalogue of passes derives it from these declarations, never from a list of names.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar, cast, get_args

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from tradeoff.context import Context
from tradeoff.distributions import Distribution
from tradeoff.errors import ConfigError, ModelError
from tradeoff.imports import import_module
from tradeoff.model import Format, ModelHandle
from tradeoff.validation import validate

# The order passes compose in: torch-side compression first, then export, then graph rewrites and quantization,
# then the precision the runtime computes what stays float in.
STAGES = ("transfer", "fuse", "prune", "lowrank", "distill", "qat", "cluster", "export", "graph", "quantize",
          "embedding", "precision")
# What presets select by; "opt-in" passes are searched only where a task names them.
TAGS = frozenset({"speed", "size", "retrains", "low-bit", "lossless", "export", "opt-in"})
ENTRY_POINT_GROUP = "tradeoff.passes"


class PassConfig(BaseModel):
    """A pass's options: frozen, unknown keys rejected, every field with a default, versioned for old recipes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = 1


class FinetuneConfig(PassConfig):
    """Options of the recovery step that passes which damage accuracy (pruning, sharing) run afterwards."""

    finetune_epochs: int = Field(default=3, ge=0)
    lr: float = Field(default=1e-3, gt=0.0)


C = TypeVar("C", bound=PassConfig)


class Pass(ABC, Generic[C]):
    """Turns a model into a cheaper model. `apply` checks the input, then calls `transform`; neither mutates it.

    Subclasses name their config as the generic argument (`class MyPass(Pass[MyConfig])`) and `Config` follows.
    """

    name: ClassVar[str]
    Config: ClassVar[type[PassConfig]] = PassConfig
    stage: ClassVar[str]  # its slot in a recipe, one of STAGES
    accepts: ClassVar[frozenset[Format]]
    produces: ClassVar[Format | None] = None  # the format of its output; None: the format it was given
    tags: ClassVar[frozenset[str]] = frozenset()
    requires: ClassVar[frozenset[str]] = frozenset()  # traits its input must have ("transformer")
    refuses: ClassVar[frozenset[str]] = frozenset()  # traits its input must not have ("ort_fused")
    provides: ClassVar[frozenset[str]] = frozenset()  # traits its output gains
    runs_only_on: ClassVar[str | None] = None  # the one runtime that can run what the pass makes, if only one
    space: ClassVar[Mapping[str, Distribution]] = {}  # config fields worth searching, and over what

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            config = next((a for a in get_args(base) if isinstance(a, type) and issubclass(a, PassConfig)), None)
            if config is not None:
                cls.Config = config

    def __init__(self, config: C | None = None) -> None:
        self.config: C = config if config is not None else cast(C, self.Config())

    @classmethod
    def available(cls) -> bool:
        """False where an optional package the pass needs is not installed; the search then leaves it out."""
        return True

    def apply(self, model: ModelHandle, ctx: Context) -> ModelHandle:
        if model.format not in self.accepts:
            fix = "put export.onnx before it" if "onnx" in self.accepts else "put it before export.onnx"
            raise ModelError(f"pass '{self.name}' cannot handle a {model.format} model", fix)
        return self.transform(model, ctx)

    @abstractmethod
    def transform(self, model: ModelHandle, ctx: Context) -> ModelHandle:
        """The pass itself, on a model of a format it accepts."""

    def restructure(self, module: nn.Module, state: dict[str, Any]) -> nn.Module:
        """Rebuild the module structure this pass produced, so a saved state dict can be loaded into it.

        Only passes that change a torch model's module types or shapes override it; they record `state`
        (JSON-able: which channels were removed, which ranks were kept) with `ModelHandle.with_module`.
        """
        raise ModelError(f"pass '{self.name}' does not change a torch model's structure")

    def step(self) -> dict[str, Any]:
        return {"pass": self.name, **self.config.model_dump(mode="json")}


P = TypeVar("P", bound=type[Pass[Any]])
_REGISTRY: dict[str, type[Pass[Any]]] = {}
_discovered = False


def register(cls: P) -> P:
    """Class decorator: make a pass known by its name, after checking the facts it declares."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise RuntimeError(f"pass '{cls.name}' registered twice")
    if getattr(cls, "stage", None) not in STAGES:
        raise RuntimeError(f"pass '{cls.name}' declares stage {getattr(cls, 'stage', None)!r}; "
                           f"stages: {', '.join(STAGES)}")
    if unknown := cls.tags - TAGS:
        raise RuntimeError(f"pass '{cls.name}' declares unknown tags {sorted(unknown)}; "
                           f"tags: {', '.join(sorted(TAGS))}")
    if not_fields := set(cls.space) - set(cls.Config.model_fields):
        raise RuntimeError(f"pass '{cls.name}' declares a search space for {sorted(not_fields)}, not config fields")
    _REGISTRY[cls.name] = cls
    return cls


def _discover() -> None:
    """Import every module of this package, then every module the `tradeoff.passes` entry point group names:
    each pass registers itself on import, so adding a pass is adding a file (or installing a package)."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    package = importlib.import_module("tradeoff.passes")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"tradeoff.passes.{module.name}")
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        entry.load()


def load_plugins(modules: tuple[str, ...], search_dirs: tuple[Path, ...] = ()) -> None:
    """Import the modules a task file's `search.plugins` names (found beside the task file too), registering the
    passes they define."""
    _discover()
    for name in modules:
        import_module(name, "plugin", search_dirs)


def registered_passes() -> dict[str, type[Pass[Any]]]:
    _discover()
    return dict(sorted(_REGISTRY.items()))


def get_pass(name: str) -> type[Pass[Any]]:
    _discover()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known passes: {', '.join(sorted(_REGISTRY))}"
        raise ConfigError(f"unknown pass '{name}'", hint)
    return _REGISTRY[name]


def build_pass(step: dict[str, Any]) -> Pass[Any]:
    """Instantiate a pass from a recipe step such as {'pass': 'quantize.static', 'calibration': 'entropy'}."""
    options = dict(step)
    name = options.pop("pass", None)
    if not isinstance(name, str):
        raise ConfigError(f"recipe step {step} has no 'pass' name", "write it as {pass: NAME, ...options}")
    cls = get_pass(name)
    current = cls.Config.model_fields["version"].default
    if options.get("version", current) != current:
        raise ConfigError(f"recipe step for pass '{name}' has config version {options['version']}; this tradeoff "
                          f"reads version {current}", "re-run the search, or install the tradeoff that wrote it")
    return cls(validate(cls.Config, options, f"pass '{name}'"))
