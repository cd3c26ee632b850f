"""Hyperparameter spaces: what `tune.space` declares, sampled define-by-run into train options and factory options.

Keys are `train.<option>` (a TrainSpec field; nested ones dotted: `train.early_stopping.patience`) or
`model.<keyword>` of the model's factory. A value is a range as in search.space ({low, high[, log]}, a list of
choices, or one value), optionally with
- `when: {other.key: value or [values]}`: sampled only where the other parameter took one of those values, and
  left at the task's own setting elsewhere (momentum only with sgd);
- `{layers: range, width: range}` for an option that takes one width per layer: the depth is sampled first,
  then each layer's width, so a three-layer network has three widths of its own.

A candidate is the values a trial chose. Building it makes the model anew from the factory (weights seeded by
train.seed), measures its cost before any training (a ceiling it breaks prunes it then), and trains it on the
training split, watched on validation epoch by epoch, where the study's pruner may stop it.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import optuna
import torch
from torch import nn

from tradeoff.config import TrainSpec
from tradeoff.context import Context
from tradeoff.data import DataBundle
from tradeoff.distributions import Choice, Float, Range, parse_range
from tradeoff.errors import ConfigError
from tradeoff.imports import import_object
from tradeoff.metrics import Metric
from tradeoff.model import ModelHandle
from tradeoff.nas.space import Architecture, ArchitectureSpace
from tradeoff.search.record import TrialRecord
from tradeoff.search.study import Outcome
from tradeoff.training.distill import KnowledgeDistillation
from tradeoff.training.trainer import Trainer
from tradeoff.tuning.cost import CostMeter
from tradeoff.validation import validate

SECTION = "tune.space"
SECTIONS = ("train", "model")
# what a user training function is called with: the module (trained in place), the data, the trial's train
# options, and report(epoch, validation metric), to call after every epoch
TrainFunction = Callable[[nn.Module, DataBundle, TrainSpec, Callable[[int, float], None]], None]
Teaching = Callable[[nn.Module], KnowledgeDistillation]  # a student -> its distillation loss from the teacher


@dataclass(frozen=True)
class Param:
    """One tuned value; `when` maps another parameter's key to the values under which this one is sampled."""

    key: str
    range: Range
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    @property
    def names(self) -> dict[str, Range]:
        return {self.key: self.range}

    def value(self, pick: Callable[[str, Range], Any]) -> Any:
        return pick(self.key, self.range)


@dataclass(frozen=True)
class LayerWidths(Param):
    """A width per layer: `range` is the number of layers, `width` each layer's own range."""

    width: Range = Choice((1,))

    @property
    def depths(self) -> list[int]:
        if isinstance(self.range, Choice):
            return [int(v) for v in self.range.values]
        return list(range(int(self.range.low), int(self.range.high) + 1))

    @property
    def names(self) -> dict[str, Range]:
        return {f"{self.key}.layers": self.range, **{f"{self.key}.{i}": self.width for i in range(max(self.depths))}}

    def value(self, pick: Callable[[str, Range], Any]) -> Any:
        layers = int(pick(f"{self.key}.layers", self.range))
        return [pick(f"{self.key}.{i}", self.width) for i in range(layers)]


@dataclass(frozen=True)
class Hyperparameters:
    """The values a trial chose, by key (`train.lr`, `model.widths`), and the architecture an architecture search
    chose; what is not tuned is the task's own."""

    values: dict[str, Any]
    architecture: Architecture | None = None

    def key(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)

    def as_dict(self) -> dict[str, Any]:
        if self.architecture is None:
            return dict(self.values)
        return {**self.values, "model": self.architecture.model_section()}

    def section(self, name: str) -> dict[str, Any]:
        """The values of `train` or `model`, nested where a key is dotted."""
        nested: dict[str, Any] = {}
        for key, value in self.values.items():
            head, *path = key.split(".")
            if head != name:
                continue
            level = nested
            for part in path[:-1]:
                level = level.setdefault(part, {})
            level[path[-1]] = value
        return nested


def _merged(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        inner = merged.get(key)
        merged[key] = _merged(inner if isinstance(inner, dict) else {}, value) if isinstance(value, dict) else value
    return merged


def _parse(key: str, raw: Any) -> Param:
    head = key.split(".")[0]
    if head not in SECTIONS or "." not in key:
        raise ConfigError(f"{SECTION} key '{key}' must start with train. or model.",
                          "e.g. train.lr (any train option) or model.widths (a keyword of the model's factory)")
    when: dict[str, tuple[Any, ...]] = {}
    if isinstance(raw, Mapping) and "when" in raw:
        raw = dict(raw)
        condition = raw.pop("when")
        if not isinstance(condition, Mapping) or not condition:
            raise ConfigError(f"{SECTION}.{key}.when must map another tuned key to its value(s)",
                              "e.g. when: {train.optimizer: sgd}")
        when = {k: tuple(v) if isinstance(v, list | tuple) else (v,) for k, v in condition.items()}
        if "value" in raw:
            raw = raw["value"]
    if isinstance(raw, Mapping) and {"layers", "width"} <= set(raw):
        if set(raw) - {"layers", "width"}:
            raise ConfigError(f"{SECTION}.{key} takes layers and width, got {sorted(raw)}")
        layers = parse_range(f"{key}.layers", raw["layers"], SECTION)
        widths = LayerWidths(key, layers, when, parse_range(f"{key}.width", raw["width"], SECTION))
        if isinstance(layers, Float) and not float(layers.low).is_integer() or min(widths.depths) < 1:
            raise ConfigError(f"{SECTION}.{key}.layers must be whole numbers of at least 1, got {raw['layers']}")
        return widths
    return Param(key, parse_range(key, raw, SECTION), when)


def _conditions_first(params: list[Param]) -> list[Param]:
    """The parameters ordered so that each comes after those its condition names, whatever order the task file
    lists them in; a condition on an untuned key, or conditions that go round in a circle, are refused."""
    by_key = {p.key: p for p in params}
    for param in params:
        for other, values in param.when.items():
            if other not in by_key or other == param.key:
                raise ConfigError(f"{SECTION}.{param.key}.when names '{other}', which is not tuned",
                                  "a condition names another key of tune.space")
            known = by_key[other].range
            if isinstance(known, Choice) and not set(values) <= set(known.values):
                raise ConfigError(f"{SECTION}.{param.key}.when wants {other} in {list(values)}, which it never takes "
                                  f"(its choices: {list(known.values)})")
    ordered: list[Param] = []
    while len(ordered) < len(params):
        ready = [p for p in params if p not in ordered and all(by_key[k] in ordered for k in p.when)]
        if not ready:
            raise ConfigError(f"the conditions of {SECTION} go round in a circle: "
                              f"{', '.join(p.key for p in params if p not in ordered)}")
        ordered += ready
    return ordered


@dataclass
class HyperparameterSpace:
    """The tuned parameters of one model and data; builds (trains) a candidate and measures it on validation."""

    params: list[Param]
    model: ModelHandle  # the task's model: its factory and options, or a module whose weights each trial copies
    train: TrainSpec  # the task's own train options, which the tuned values override
    data: DataBundle
    metric: Metric
    meter: CostMeter
    train_function: TrainFunction | None = None
    search_dirs: tuple[Path, ...] = ()
    architectures: ArchitectureSpace | None = None  # an architecture search's space; None: the task's factory
    first: list[tuple[dict[str, Any], str]] = field(default_factory=list)  # points to measure before sampling
    teaching: Teaching | None = None  # tune/nas distill: the task's trained model teaches every candidate
    # id(module) -> the epochs to train it for again, and the seconds its training took
    _trained: dict[int, tuple[int, float]] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def parse(cls, space: Mapping[str, Any], model: ModelHandle, **rest: Any) -> HyperparameterSpace:
        params = _conditions_first([_parse(key, raw) for key, raw in space.items()])
        if any(p.key.startswith("model.") for p in params) and model.factory is None:
            raise ConfigError("tune.space tunes model options, but the model has no factory to build it with",
                              "give the model as source: torch with a factory, or tune train options only")
        parsed = cls(params, model, **rest)
        parsed._check_ranges()
        return parsed

    @cached_property
    def _factory_parameters(self) -> Mapping[str, inspect.Parameter]:
        """The factory's keyword parameters (none without a factory): what model.* may tune, and their defaults."""
        if self.model.factory is None:
            return {}
        return inspect.signature(import_object(self.model.factory, "model.factory", self.search_dirs)).parameters

    def _check_ranges(self) -> None:
        """Every end of every range must make valid train options and fit the factory: found now, not at trial 7."""
        for param in self.params:
            for name, distribution in param.names.items():
                ends = distribution.values if isinstance(distribution, Choice) else \
                    (distribution.low, distribution.high)
                for end in ends:
                    value = [end] if isinstance(param, LayerWidths) and name != f"{param.key}.layers" else end
                    if param.key.startswith("train."):
                        self.train_options(Hyperparameters({param.key: value}), f"{SECTION}.{param.key}")
                    elif self.model.factory and param.key.split(".")[1] not in self._factory_parameters:
                        raise ConfigError(f"{SECTION} tunes {param.key}, which {self.model.factory} does not take",
                                          f"its keywords: {', '.join(self._factory_parameters)}")

    def train_options(self, candidate: Hyperparameters, where: str = "a trial's train options",
                      overrides: Mapping[str, Any] | None = None) -> TrainSpec:
        """The task's train options, the candidate's over them, and `overrides` (nas.rerank.train) over both."""
        merged = _merged(self.train.model_dump(), candidate.section("train"))
        return validate(TrainSpec, _merged(merged, overrides or {}), where)

    # -- what the study asks of a space -------------------------------------------------------------------------
    def sample(self, trial: optuna.Trial) -> Hyperparameters:
        return self._candidate(trial)

    def at(self, params: Mapping[str, Any]) -> Hyperparameters:
        return self._candidate(optuna.trial.FixedTrial(dict(params)))

    def _candidate(self, trial: optuna.trial.BaseTrial) -> Hyperparameters:
        chosen: dict[str, Any] = {}
        for param in self.params:  # a condition's key comes first; it may be unset, and then has its default
            if all(chosen.get(k, self._default(k)) in v for k, v in param.when.items()):
                chosen[param.key] = param.value(lambda name, distribution: distribution.suggest(trial, name))
        architecture = self.architectures.sample(trial) if self.architectures is not None else None  # type: ignore[arg-type]
        return Hyperparameters(chosen, architecture)

    def _default(self, key: str) -> Any:
        section, *path = key.split(".")
        if section == "model":
            defaults = {name: p.default for name, p in self._factory_parameters.items()
                        if p.default is not inspect.Parameter.empty}
            return {**defaults, **self.model.factory_options}.get(path[0])
        value: Any = self.train.model_dump()
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        return value

    def grid(self) -> list[dict[str, Any]] | None:
        names = {name: d for p in self.params for name, d in p.names.items()}
        if self.architectures is not None or not all(isinstance(d, Choice) for d in names.values()):
            return None
        return [dict(zip(names, point, strict=True))
                for point in itertools.product(*(d.values for d in names.values()))]  # type: ignore[union-attr]

    def grid_space(self) -> dict[str, list[Any]]:
        """The grid as Optuna's GridSampler takes it; a continuous range has none."""
        names = {name: d for p in self.params for name, d in p.names.items()}
        if continuous := [n for n, d in names.items() if not isinstance(d, Choice)]:
            raise ConfigError(f"the grid sampler needs lists of choices, and {', '.join(continuous)} is a range",
                              "give each tuned key a list of values, or use sampler: tpe or random")
        return {n: list(d.values) for n, d in names.items()}  # type: ignore[union-attr]

    def queued(self, finished: Iterable[TrialRecord]) -> list[tuple[dict[str, Any], str]]:
        """The points given to measure first; else the task's own settings, where the space holds them: every
        later trial is compared with them."""
        if any(True for _ in finished):
            return []
        if self.first or self.architectures is not None:
            return list(self.first)
        point: dict[str, Any] = {}
        for param in self.params:
            default = self._default(param.key)
            if isinstance(param, LayerWidths):
                if not isinstance(default, list | tuple) or not default:
                    return []
                point[f"{param.key}.layers"] = len(default)
                point |= {f"{param.key}.{i}": w for i, w in enumerate(default)}
                checks = [(param.range, len(default)), *((param.width, w) for w in default)]
            else:
                point[param.key] = default
                checks = [(param.range, default)]
            if not all(_contains(d, v) for d, v in checks):
                return []
        return [(point, "defaults")]

    def failure(self, candidate: Any) -> str | None:
        return None

    def learn(self, finished: Iterable[TrialRecord]) -> None:
        return None

    def without_unchanged(self, candidate: Any) -> tuple[Hyperparameters, list[str]]:
        return candidate, []

    def build(self, candidate: Hyperparameters, ctx: Context, bounded: bool = True) -> ModelHandle:
        """The model the candidate describes, trained; over a ceiling it is pruned before training, unless it is
        not `bounded` (a reference, measured whatever it costs)."""
        options = self.train_options(candidate)
        handle = self.fresh_model(candidate, options.seed)
        cost = self.meter.admit(handle, ctx) if bounded else self.meter.measure(handle, ctx)
        module = handle.torch_module()

        def report(epoch: int, value: float) -> None:
            if ctx.on_epoch is not None:
                ctx.on_epoch(epoch, {**cost, "metric": value})

        start = time.perf_counter()
        epochs = train_model(module, self.data, options, self.metric, report, ctx.deadline, self.train_function,
                             self.teaching)
        self._trained[id(module)] = epochs, time.perf_counter() - start
        return handle.with_module(module)

    def fresh_model(self, candidate: Hyperparameters, seed: int) -> ModelHandle:
        """The untrained model: the candidate's architecture, or the task's factory with the candidate's options
        (weights drawn from `seed`), or a copy of the given module."""
        torch.manual_seed(seed)
        if candidate.architecture is not None:
            architecture = candidate.architecture
        elif self.model.factory is not None:
            options = {**self.model.factory_options, **candidate.section("model")}
            architecture = Architecture(self.model.factory, options)
        else:
            return self.model.with_module(self.model.torch_module())
        module = architecture.build(self.search_dirs)
        return ModelHandle(module=module.eval(), factory=architecture.factory,
                           factory_options=dict(architecture.options))

    def measure(self, model: ModelHandle) -> Outcome:
        """The trained model's metric on validation, its cost (measured before training), the epochs to train it
        for again on train+val, and the seconds its training took (what a search's time budget keeps for the
        trainings after it is reckoned from)."""
        assert model.module is not None
        epochs, seconds = self._trained.pop(id(model.module))
        values = {**self.meter.cost(model), "metric": self.meter.evaluator.score(model, "val"),
                  "retrain_epochs": float(epochs), "train_s": seconds}
        return Outcome(values=values, latency=self.meter.latency_of(model))


def train_model(module: nn.Module, data: DataBundle, options: TrainSpec, metric: Metric,
                report: Callable[[int, float], None], deadline: float | None = None,
                train_function: TrainFunction | None = None, teaching: Teaching | None = None) -> int:
    """Train `module` in place on the training split, watched on validation (with `teaching`, learning from a
    teacher too); return how many epochs trained it into the weights it ends with (what a retrain on train+val
    repeats): the best epoch where the best weights are restored, else every epoch run."""
    if train_function is not None:
        reported: list[int] = []

        def counted(epoch: int, value: float) -> None:
            reported.append(epoch)
            report(epoch, value)

        train_function(module, data, options, counted)
        module.eval()
        return max(len(reported), 1)
    with teaching(module) if teaching is not None else contextlib.nullcontext() as extra_loss:
        result = Trainer(options).fit(module, data.train, data.val, metric=metric, deadline=deadline,
                                      on_epoch_end=lambda r: report(r.epoch, r.monitor_metric),  # type: ignore[arg-type]
                                      extra_loss=extra_loss)
    restored = options.early_stopping is not None and options.early_stopping.restore_best
    return max(result.best_epoch if restored else result.epochs_run, 1)


def _contains(distribution: Range, value: Any) -> bool:
    if isinstance(distribution, Choice):
        return value in distribution.values
    return isinstance(value, int | float) and not isinstance(value, bool) and \
        distribution.low <= value <= distribution.high
