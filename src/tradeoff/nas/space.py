"""Architecture spaces: what a neural architecture search may build, sampled define-by-run from an Optuna trial.

A declarative space names, per family (mlp, cnn over 1-D signals or 2-D images, gru), the depth range and the
choices for each block (width, kernel, stride) and for the whole network (activation, normalization, skip
connections, dropout, pooling, head). A skip connection is kept only where some block's output has its input's
shape: elsewhere it changes nothing, and its twin without one is the same candidate, not a second one to train.
Each block draws its own width, kernel and stride, so the parameters of
block i exist only in trials whose depth exceeds i: names are stable (`depth`, `width_0`, `kernel_0`, ... and
`family` when there are several, each family's own then prefixed `cnn_depth`, `gru_hidden`), which is what lets a
sampler learn from earlier trials. A choice with one value is fixed, not searched.

A trial's architecture is a factory and its keyword options (tradeoff.architectures), the form a task file's
model takes, so the chosen one is saved, rebuilt and optimized like any other described model. A user space is a
callable by import path that takes the trial and returns an nn.Module (rebuilt later from the trial's parameters
through `user_architecture`) or `{"factory": ..., "options": {...}}`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, TypeVar

import optuna
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from torch import nn

from tradeoff.architectures import Activation, Head, Norm, residual_fits
from tradeoff.errors import ConfigError
from tradeoff.imports import import_object
from tradeoff.model import build_module
from tradeoff.validation import validate

Family = Literal["mlp", "cnn", "gru"]
FACTORIES: dict[str, str] = {"mlp": "tradeoff.architectures:MLP", "cnn": "tradeoff.architectures:CNN",
                             "gru": "tradeoff.architectures:GRUClassifier"}
USER_FACTORY = "tradeoff.nas.space:user_architecture"
T = TypeVar("T")


def _as_list(value: Any) -> Any:
    """One value is a choice of one (fixed): `norm: batch` reads as `norm: [batch]`."""
    return value if isinstance(value, list | tuple) else [value]


Choices = Annotated[list[T], BeforeValidator(_as_list), Field(min_length=1)]
Width = Annotated[int, Field(ge=1)]
Rate = Annotated[float, Field(ge=0, lt=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DepthRange(_Strict):
    """How many blocks (layers for a GRU): every whole number from low to high. A single number fixes it."""

    low: int = Field(ge=1)
    high: int = Field(ge=1)

    @model_validator(mode="before")
    @classmethod
    def _one_number(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):  # [1, 4] would read as two choices or as a range: ask which
            raise ValueError("give a depth range as {low: 1, high: 4}, or one number to fix it")
        return {"low": value, "high": value} if isinstance(value, int) else value

    @model_validator(mode="after")
    def _ordered(self) -> DepthRange:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) is below low ({self.low})")
        return self


class RateRange(_Strict):
    """A dropout rate drawn from [low, high] (a continuous parameter), in place of a list of choices."""

    low: Rate
    high: Rate
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> RateRange:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) is below low ({self.low})")
        return self


Dropout = Annotated[RateRange | list[Rate], BeforeValidator(lambda v: v if isinstance(v, dict) else _as_list(v))]


class MLPSpace(_Strict):
    depth: DepthRange = DepthRange(low=1, high=3)
    width: Choices[Width] = [32, 64, 128]
    activation: Choices[Activation] = ["relu"]
    norm: Choices[Norm] = ["none", "batch"]
    skip: Choices[bool] = [False, True]
    dropout: Dropout = [0.0]


class CNNSpace(MLPSpace):
    width: Choices[Width] = [8, 16, 32]
    kernel: Choices[Width] = [3, 5]
    stride: Choices[Width] = [1, 2]
    pool: Choices[bool] = [False]
    head: Choices[Head] = ["gap", "flatten"]


class GRUSpace(_Strict):
    depth: DepthRange = DepthRange(low=1, high=2)
    hidden: Choices[Width] = [16, 32, 64]
    dropout: Dropout = [0.0]  # between stacked layers, so only drawn for depth >= 2


class SpaceSpec(_Strict):
    """The `space` of a NAS task: which families, and each one's choices (defaults where a section is left out)."""

    family: Choices[Family] = ["cnn"]
    mlp: MLPSpace = MLPSpace()
    cnn: CNNSpace = CNNSpace()
    gru: GRUSpace = GRUSpace()

    @model_validator(mode="after")
    def _sections_are_searched(self) -> SpaceSpec:
        for family in ("mlp", "cnn", "gru"):
            if family in self.model_fields_set and family not in self.family:
                raise ValueError(f"section '{family}' is given but family {self.family} leaves it out; "
                                 f"add {family} to family or remove the section")
        return self


@dataclass(frozen=True)
class Architecture:
    """One trial's network: the factory and keyword options that build it (what a task file's model names)."""

    factory: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def build(self, search_dirs: tuple[Path, ...] = ()) -> nn.Module:
        """A freshly initialised module (seed torch first for the same weights)."""
        return build_module(self.factory, search_dirs, dict(self.options))

    def model_section(self) -> dict[str, Any]:
        """The task file's `model` that builds this architecture: how the chosen one goes on to train or optimize."""
        return {"source": "torch", "factory": self.factory, "options": dict(self.options)}

    def __str__(self) -> str:
        """`CNN(channels=[16, 32], kernel=5)`: the factory's name and the options that are not the data's shape."""
        options = {k: v for k, v in self.options.items() if k not in ("input_shape", "classes")}
        return f"{self.factory.rpartition(':')[2]}({', '.join(f'{k}={v}' for k, v in options.items())})"


class ArchitectureSpace(Protocol):
    def sample(self, trial: optuna.Trial) -> Architecture:
        """The architecture of `trial`, its choices suggested on the trial (define-by-run)."""
        ...


@dataclass(frozen=True)
class _Suggest:
    """Suggests on a trial under the family's prefix; a choice of one value is returned, not suggested."""

    trial: optuna.Trial
    prefix: str

    def choice(self, name: str, values: Sequence[T]) -> T:
        if len(values) == 1:
            return values[0]
        return self.trial.suggest_categorical(self.prefix + name, list(values))  # type: ignore[arg-type, return-value]

    def depth(self, depth: DepthRange) -> int:
        if depth.low == depth.high:
            return depth.low
        return self.trial.suggest_int(self.prefix + "depth", depth.low, depth.high)

    def dropout(self, dropout: RateRange | list[float]) -> float:
        if isinstance(dropout, RateRange):
            return self.trial.suggest_float(self.prefix + "dropout", dropout.low, dropout.high, log=dropout.log)
        return float(self.choice("dropout", dropout))


@dataclass(frozen=True)
class BlockSpace:
    """The declarative space over tradeoff.architectures for data of `sample_shape` with `classes` outputs.

    A cnn reads a sample of shape (L,) as one channel of length L, (H, W) as one image channel, and (C, L) /
    (C, H, W) as given; an mlp flattens any shape; a gru reads (L,) or (L, features)."""

    spec: SpaceSpec
    sample_shape: tuple[int, ...]
    classes: int

    def sample(self, trial: optuna.Trial) -> Architecture:
        families = self.spec.family
        family = families[0] if len(families) == 1 else trial.suggest_categorical("family", list(families))
        suggest = _Suggest(trial, "" if len(families) == 1 else f"{family}_")
        options = {"mlp": self._mlp, "cnn": self._cnn, "gru": self._gru}[family](suggest)
        return Architecture(FACTORIES[family], {"classes": self.classes, **options})

    def _mlp(self, suggest: _Suggest) -> dict[str, Any]:
        space = self.spec.mlp
        depth = suggest.depth(space.depth)
        widths = [suggest.choice(f"width_{i}", space.width) for i in range(depth)]
        widths_in = [math.prod(self.sample_shape), *widths[:-1]]
        fits = any(residual_fits(w_in, w) for w_in, w in zip(widths_in, widths, strict=True))
        return {"input_shape": list(self.sample_shape), "widths": widths,
                "activation": suggest.choice("activation", space.activation),
                "norm": suggest.choice("norm", space.norm), "residual": suggest.choice("skip", space.skip) and fits,
                "dropout": suggest.dropout(space.dropout)}

    def _cnn(self, suggest: _Suggest) -> dict[str, Any]:
        space, shape = self.spec.cnn, list(self.sample_shape)
        depth = suggest.depth(space.depth)
        blocks = [(suggest.choice(f"width_{i}", space.width), suggest.choice(f"kernel_{i}", space.kernel),
                   suggest.choice(f"stride_{i}", space.stride)) for i in range(depth)]
        input_shape = [1, *shape] if len(shape) < 3 else shape
        channels_in = [input_shape[0], *(width for width, _, _ in blocks[:-1])]
        fits = any(residual_fits(c, w, k, s, k // 2) for c, (w, k, s) in zip(channels_in, blocks, strict=True))
        return {"input_shape": input_shape,
                "channels": [width for width, _, _ in blocks], "kernel": [kernel for _, kernel, _ in blocks],
                "stride": [stride for _, _, stride in blocks],
                "activation": suggest.choice("activation", space.activation),
                "norm": suggest.choice("norm", space.norm), "residual": suggest.choice("skip", space.skip) and fits,
                "pool": suggest.choice("pool", space.pool), "head": suggest.choice("head", space.head),
                "dropout": suggest.dropout(space.dropout)}

    def _gru(self, suggest: _Suggest) -> dict[str, Any]:
        space = self.spec.gru
        depth = suggest.depth(space.depth)
        return {"input_shape": list(self.sample_shape), "layers": depth,
                "hidden": suggest.choice("hidden", space.hidden),
                "dropout": suggest.dropout(space.dropout) if depth > 1 else 0.0}


@dataclass(frozen=True)
class UserSpace:
    """A space written as code: `path` ("module:function") names a callable taking the trial and returning an
    nn.Module or {"factory": ..., "options": {...}}. A module comes back as the factory `user_architecture` with
    the parameters the callable suggested, so it is rebuilt by calling the callable again on those values."""

    path: str
    search_dirs: tuple[Path, ...] = ()

    def sample(self, trial: optuna.Trial) -> Architecture:
        build: Callable[[optuna.trial.BaseTrial], Any] = import_object(self.path, "nas.space", self.search_dirs)
        before = set(trial.params)
        result = build(trial)
        if isinstance(result, nn.Module):
            params = {name: value for name, value in trial.params.items() if name not in before}
            return Architecture(USER_FACTORY, {"space": self.path, "params": params})
        if isinstance(result, Mapping) and isinstance(result.get("factory"), str):
            return Architecture(result["factory"], dict(result.get("options") or {}))
        raise ConfigError(f"nas.space '{self.path}' returned a {type(result).__name__}",
                          'return an nn.Module or {"factory": "module:callable", "options": {...}}')


def user_architecture(space: str, params: Mapping[str, Any]) -> nn.Module:
    """The module the user space `space` builds for the parameter values `params` (a finished trial's): the
    factory a user space's architecture is saved and rebuilt with."""
    build: Callable[[optuna.trial.BaseTrial], Any] = import_object(space, "nas.space")
    module = build(optuna.trial.FixedTrial(dict(params)))
    if not isinstance(module, nn.Module):
        raise ConfigError(f"nas.space '{space}' returned a {type(module).__name__} for {dict(params)}",
                          "return an nn.Module")
    return module


def load_space(space: Mapping[str, Any] | str, sample_shape: Sequence[int], classes: int,
               search_dirs: tuple[Path, ...] = ()) -> ArchitectureSpace:
    """The space a NAS task declares: a mapping is the declarative space (validated, one-line errors), a string
    the import path of a user space."""
    if isinstance(space, str):
        return UserSpace(space, search_dirs)
    return BlockSpace(validate(SpaceSpec, dict(space), "nas.space"), tuple(int(s) for s in sample_shape),
                      int(classes))
