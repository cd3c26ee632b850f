"""Recipe spaces: ordered slots of candidate passes plus `slot__field` distributions, all derived from the registry.

A parameter is sampled exactly when the pass chosen for its slot has a config field of that name; no other
rule decides whether something is searched. The flat dict of a trial's params is the recipe's address. The
empty recipe is never a candidate: it is the baseline, measured apart.

Slots are the stages passes declare, in STAGES order; which passes can follow one another is decided by the
formats and traits they declare. A space also brings its strategy: the points worth measuring before the sampler
explores (each quantization pass alone) and after them (the best one with one more step).

A space also learns from what it builds: a step that failed is not tried again on the same input (nor, for an
export that failed on the model as given, after any other step), and a step whose output equals its input is left
out of the recipe it was sampled in.
"""

from __future__ import annotations

import itertools
import re
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import optuna
import torch

from tradeoff.context import Context
from tradeoff.distributions import Choice, Distribution, Kept, parse_range
from tradeoff.errors import ConfigError, TradeoffError
from tradeoff.model import ModelHandle
from tradeoff.passes import STAGES, TAGS, Pass, build_pass, get_pass, registered_passes
from tradeoff.recipe import Recipe
from tradeoff.search.record import TrialRecord
from tradeoff.validation import validate

NONE = "none"
FORMATS = frozenset({"torch", "onnx"})
PREFIX_CACHE = 8  # built recipe prefixes kept in memory
# measured pass by pass first: cheap, interpretable, and what most recipes end with
SEEDED_STAGES = ("quantize", "precision")
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _plain(text: str) -> str:
    return ANSI_ESCAPE.sub("", text)


class StepFailed(Exception):
    """A recipe step raised: `note` names the pass and the root cause in one plain line, `details` is the whole
    traceback (for the trial's error.txt)."""

    def __init__(self, step: str, cause: BaseException, depth: int | None = None) -> None:
        self.depth = depth  # how many steps of the recipe it took to fail (None: not a step)
        root = cause
        while root.__cause__ is not None:  # the exporter wraps the reason in pages of advice; the reason is last
            root = root.__cause__
        what = str(root) if isinstance(root, TradeoffError) else f"{type(root).__name__}: {root}"
        self.note = f"{step}: {_plain(what).strip().splitlines()[0] if what.strip() else type(root).__name__}"
        self.details = _plain("".join(traceback.format_exception(cause)))
        super().__init__(self.note)


def _same_model(before: ModelHandle, after: ModelHandle) -> bool:
    """Whether a step gave back the model it was given: the same ONNX bytes (metadata included: it may carry the
    precision to run at), or the same modules and weights, for the same runtime."""
    if after is before:
        return True
    if before.runtime != after.runtime:
        return False
    if before.onnx_bytes is not None or after.onnx_bytes is not None:
        return before.onnx_bytes == after.onnx_bytes
    if before.module is None or after.module is None or str(before.module) != str(after.module):
        return False
    old, new = before.module.state_dict(), after.module.state_dict()
    return old.keys() == new.keys() and all(
        isinstance(old[k], torch.Tensor) and isinstance(new[k], torch.Tensor) and old[k].dtype == new[k].dtype
        and old[k].shape == new[k].shape and torch.equal(old[k], new[k]) for k in old)


@dataclass(frozen=True)
class RecipeSpace:
    """Recipes for a model with traits `start` (its format, and "transformer" for one)."""

    slots: dict[str, tuple[str, ...]]
    start: frozenset[str]
    params: dict[str, Distribution] = field(default_factory=dict)
    required: frozenset[str] = frozenset()
    first: tuple[dict[str, Any], ...] = ()  # points measured before any other: recipes the task names to try first
    _built: OrderedDict[str, ModelHandle] = field(default_factory=OrderedDict, init=False, compare=False, repr=False)
    _failed: dict[str, str] = field(default_factory=dict, init=False, compare=False, repr=False)  # key -> note
    _unchanged: set[str] = field(default_factory=set, init=False, compare=False, repr=False)  # prefixes
    _kept: set[str] = field(default_factory=set, init=False, compare=False, repr=False)  # see `keep`

    @property
    def passes(self) -> set[str]:
        return {p for passes in self.slots.values() for p in passes}

    def sample(self, trial: optuna.Trial) -> Recipe | None:
        """The recipe a trial's suggestions spell; None when it is empty or its passes cannot follow one another."""
        return self._recipe(lambda name, distribution: distribution.suggest(trial, name))

    def grid(self) -> list[dict[str, Any]] | None:
        """Every valid point of a finite space as trial params; None when a parameter is continuous."""
        active = {k for slot in self.slots for chosen in self.slots[slot] for k in self._keys(slot, chosen)}
        if not all(isinstance(self.params[k], Choice) for k in active):
            return None
        points: list[dict[str, Any]] = [{}]
        for slot in self.slots:
            choices = self._choices(slot)
            points = [{**point, **({slot: chosen} if len(choices) > 1 else {}), **dict(zip(keys, values, strict=True))}
                      for point in points for chosen in choices
                      for keys in [self._keys(slot, chosen)]
                      for values in itertools.product(*(self.params[k].values for k in keys))]  # type: ignore[union-attr]
        return [p for p in points if self.at(p) is not None]

    def at(self, params: Mapping[str, Any]) -> Recipe | None:
        return self._recipe(lambda name, d: d.value_of(params[name]) if isinstance(d, Kept) else params[name])

    def address(self, recipe: Recipe) -> dict[str, Any] | None:
        """The trial params that spell `recipe` here; None where it is not one of this space's recipes (a pass
        outside the menu, two steps of one stage, an option off its range or fixed at another value)."""
        steps = {get_pass(step["pass"]).stage: step for step in recipe.steps}
        if len(steps) != len(recipe.steps) or steps.keys() - self.slots.keys():
            return None
        point: dict[str, Any] = {}
        for slot in self.slots:
            step = steps.get(slot)
            chosen = step["pass"] if step else NONE
            if chosen not in self._choices(slot):
                return None
            if self._optional(slot):
                point[slot] = chosen
            for key in self._keys(slot, chosen):
                point[key] = self.params[key].address(step[key.partition("__")[2]])  # type: ignore[index]
                if point[key] is None:
                    return None
        spelled = self.at(point)
        return point if spelled is not None and spelled.key() == recipe.key() else None

    def trying_first(self, recipes: Iterable[Recipe]) -> tuple[RecipeSpace, list[Recipe]]:
        """This space measuring `recipes` before anything else, and those of them it cannot spell."""
        points = [(recipe, self.address(recipe)) for recipe in recipes]
        return (replace(self, first=tuple(point for _, point in points if point is not None)),
                [recipe for recipe, point in points if point is None])

    def guided(self, rankings: Mapping[str, tuple[str, ...]], most: int) -> RecipeSpace:
        """This space where a pass option that names layers to leave alone (keep_float, keep_dense) takes up to
        `most` of the first layers of its ranking (the most sensitive measured first)."""
        params = dict(self.params)
        for option, ranking in rankings.items():
            for slot, names in self.slots.items():
                if ranking and any(option in get_pass(name).Config.model_fields for name in names):
                    params.setdefault(f"{slot}__{option}", Kept(ranking, most))
        return replace(self, params=params)

    def build(self, recipe: Recipe, ctx: Context) -> ModelHandle:
        """Apply `recipe` to `ctx.teacher`, from the longest of its prefixes built before (an export costs seconds
        and many trials share it). A step that raises is remembered (see `failure`) and raised as StepFailed."""
        if ctx.teacher is None:
            raise ValueError("a recipe space builds from ctx.teacher, the model the search starts from")
        keys = [Recipe(steps=recipe.steps[:depth]).key() for depth in range(1, len(recipe.steps) + 1)]
        done = next((depth for depth in range(len(keys), 0, -1) if keys[depth - 1] in self._built), 0)
        model = self._built[keys[done - 1]] if done else ctx.teacher
        for depth in range(done + 1, len(keys) + 1):
            step, key = recipe.steps[depth - 1], keys[depth - 1]
            try:
                built = build_pass(step).apply(model, ctx)
            except Exception as exc:  # passes wrap libraries that raise anything; the trial says which step
                failed = StepFailed(step["pass"], exc, depth)
                self._failed[key] = failed.note
                raise failed from exc
            if _same_model(model, built):
                self._unchanged.add(key)
            self._built[key] = model = built
        for key in keys:  # most recently used last, shared prefixes (an export) among them
            if key in self._built:
                self._built.move_to_end(key)
        effective, _ = self.without_unchanged(recipe)
        if effective is not None:  # the recipe its trial records: finalization builds that one
            self._built[Recipe(steps=effective.steps).key()] = model
        self._evict()
        return recipe.on_its_runtime(model)

    def keep(self, recipes: Iterable[Recipe]) -> None:
        """Hold the built models of `recipes` (the trials that may become finalists) past the prefix cache, so that
        finalization times the models the trials measured instead of building them again."""
        self._kept.clear()
        self._kept.update(Recipe(steps=recipe.steps).key() for recipe in recipes)
        self._evict()

    def _evict(self) -> None:
        """Forget the least recently used prefixes beyond PREFIX_CACHE, the kept recipes aside."""
        loose = [key for key in self._built if key not in self._kept]
        for key in loose[: max(0, len(loose) - PREFIX_CACHE)]:
            del self._built[key]

    def failure(self, recipe: Recipe) -> str | None:
        """Why `recipe` cannot be built, where an earlier build learned it: a step that failed on the same input,
        or a format conversion (an export) that failed on the model as given, which fails after torch-side steps
        too: an exporter fails on the model's code, which those steps keep."""
        return next((self._failed[key] for depth in range(1, len(recipe.steps) + 1)
                     for key in self._failure_keys(recipe, depth) if key in self._failed), None)

    def learn(self, finished: Iterable[TrialRecord]) -> None:
        """Take in the step failures that trials built elsewhere recorded: before a resume, or by another worker."""
        for record in finished:
            if record.state == "failed" and record.failed_step is not None and record.candidate is not None:
                steps = Recipe.from_dict(record.candidate).steps[: record.failed_step]
                self._failed.setdefault(Recipe(steps=steps).key(), record.note or "failed")

    def without_unchanged(self, recipe: Recipe) -> tuple[Recipe | None, list[str]]:
        """`recipe` less the steps that gave back the model they were given when it was built (None where none is
        left: that is the baseline), and their passes."""
        unchanged = [depth for depth in range(1, len(recipe.steps) + 1)
                     if Recipe(steps=recipe.steps[:depth]).key() in self._unchanged]
        kept = tuple(step for depth, step in enumerate(recipe.steps, 1) if depth not in unchanged)
        return (recipe.model_copy(update={"steps": kept}) if kept else None,
                [recipe.steps[d - 1]["pass"] for d in unchanged])

    @staticmethod
    def _failure_keys(recipe: Recipe, depth: int) -> list[str]:
        """The recipe's prefix up to `depth`; for a pass that converts the format, also its step applied first."""
        step = recipe.steps[depth - 1]
        keys = [Recipe(steps=recipe.steps[:depth]).key()]
        if get_pass(step["pass"]).produces is not None:
            keys.append(Recipe(steps=(step,)).key())
        return keys

    def queued(self, finished: Iterable[TrialRecord]) -> list[tuple[dict[str, Any], str]]:
        """Points (with the strategy that chose them) to measure before the sampler's next suggestion: the recipes
        the task tries first, then each pass of the seeded stages alone, then the lossless steps alone (the model
        exported and fused: on a small CNN ONNX Runtime's float graph outran every int8 form of it at batch 1
        and 32, docs/NOTES.md); then, once, the best feasible of those with one more step (`extensions`: an
        embedding table in 4 bits after int8, bf16 for what int8 left float, structured pruning before it): TPE
        alone rarely lands on a two-pass recipe in a short search."""
        records = list(finished)
        if not records:
            return [*((point, "first") for point in self.first),
                    *((point, "seed") for stage in SEEDED_STAGES for point in self.single_pass_points(stage)),
                    *((point, "lossless") for point in self.lossless_points())]
        if any(r.strategy == "extension" for r in records):
            return []
        feasible = [r for r in records if r.state == "complete" and r.feasible
                    and r.strategy in ("first", "seed", "lossless")]
        if not feasible:
            return []
        best = min(feasible, key=lambda r: r.objectives or ())
        return [(point, "extension") for point in self.extensions(best.params)]

    def single_pass_points(self, slot: str) -> list[dict[str, Any]]:
        """Trial params for each pass of `slot` alone, with and without the lossless stages (export, graph fusion)
        where those can run, at the pass's defaults where the space holds them: a pass's defaults are its tool's
        own, what a user runs by hand and what the peers run, so a short search is never behind them (an 8-trial
        search that drew per-channel percentile calibration for quantize.static shipped dynamic int8 behind ONNX
        Runtime's own quantize_static). The sampler explores the other settings after."""
        points, empty, lossless = [], self._nothing_chosen(), self._lossless_choices()
        for chosen in self.slots.get(slot, ()):
            defaults = {key: address for key, value in self._defaults(slot, chosen).items()
                        if (address := self.params[key].address(value)) is not None}
            for companions in lossless:
                point: dict[str, Any] = {**empty, slot: chosen, **companions, **defaults}
                if self.at({**point, **self._defaults(slot, chosen)}) is not None:
                    points.append(point)
        return points

    def lossless_points(self) -> list[dict[str, Any]]:
        """Trial params for the lossless stages alone, as many of them as can run (the model exported, and its
        graph fused where that applies): what the runtime alone buys. One point, or none where the model as given
        is already that (an ONNX file with no fusion to apply)."""
        ranked = sorted(self._lossless_choices(), key=lambda choices: -sum(v != NONE for v in choices.values()))
        points = [{**self._nothing_chosen(), **companions} for companions in ranked]
        return next(([point] for point in points if self.at({**point, **self._all_defaults(point)}) is not None), [])

    def _lossless_choices(self) -> list[dict[str, str]]:
        """Each combination of passes (or none) in the optional lossless slots."""
        companions = [[(other, choice) for choice in self._choices(other)] for other in self._lossless_slots()
                      if self._optional(other)]
        return [dict(extra) for extra in itertools.product(*companions)]

    def _nothing_chosen(self) -> dict[str, str]:
        return {slot: NONE for slot in self.slots if self._optional(slot)}

    def extensions(self, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """`params` with one more pass: in a slot after its last chosen one, or before its first where the pass
        retrains the model to fewer multiply-adds (structured pruning before int8 leaves every int8 kernel less to
        do: LeNet-300-100 at 70% of its neurons ran 1.6x faster at batch 32 than int8 alone, at the same accuracy,
        benchmarks/RESULTS.md). The next steps worth trying on a recipe that already did well; the new pass's
        options are left to the sampler."""
        slots = list(self.slots)
        chosen = [i for i, slot in enumerate(slots) if params.get(slot, NONE) != NONE]
        after = [(slot, name) for slot in slots[max(chosen, default=-1) + 1:] for name in self._optional(slot)]
        before = [(slot, name) for slot in slots[:min(chosen, default=0)] for name in self._optional(slot)
                  if {"speed", "retrains"} <= get_pass(name).tags]
        points = []
        for slot, name in after + before:
            point = {**params, slot: name}
            if self.at({**point, **self._defaults(slot, name)}) is not None:
                points.append(point)
        return points

    def _optional(self, slot: str) -> tuple[str, ...]:
        """The passes of a slot that may also be left empty."""
        return self.slots[slot] if len(self._choices(slot)) > 1 else ()

    def _lossless_slots(self) -> list[str]:
        """Slots whose every pass changes no output (export, graph fusion): free companions of any other step."""
        return [slot for slot, passes in self.slots.items()
                if all(get_pass(p).tags & {"export", "lossless"} for p in passes)]

    def _all_defaults(self, point: Mapping[str, Any]) -> dict[str, Any]:
        """The default of each option of the passes `point` chooses (required slots' included)."""
        return {key: value for slot in self.slots for key, value in
                self._defaults(slot, point.get(slot, self._choices(slot)[0])).items()}

    def _defaults(self, slot: str, chosen: str) -> dict[str, Any]:
        keys = self._keys(slot, chosen)
        fields = get_pass(chosen).Config.model_fields if keys else {}
        return {key: fields[key.partition("__")[2]].default for key in keys}

    def _choices(self, slot: str) -> tuple[str, ...]:
        return self.slots[slot] if slot in self.required else (NONE, *self.slots[slot])

    def _keys(self, slot: str, chosen: str) -> list[str]:
        """The `slot__field` parameters that apply when `chosen` fills `slot`."""
        if chosen == NONE:
            return []
        fields = get_pass(chosen).Config.model_fields
        return [k for k in self.params if k.partition("__")[0] == slot and k.partition("__")[2] in fields]

    def _recipe(self, value: Callable[[str, Distribution], Any]) -> Recipe | None:
        steps: list[dict[str, Any]] = []
        for slot in self.slots:
            choices = self._choices(slot)
            chosen = value(slot, Choice(choices)) if len(choices) > 1 else choices[0]
            if chosen != NONE:
                steps.append({"pass": chosen, **{k.partition("__")[2]: value(k, self.params[k])
                                                 for k in self._keys(slot, chosen)}})
        return Recipe(steps=tuple(steps)) if steps and compatible([get_pass(s["pass"]) for s in steps],
                                                                  self.start) else None


def compatible(passes: list[type[Pass[Any]]], start: frozenset[str]) -> bool:
    """Whether each pass can take what the ones before it made, by the formats and traits they declare."""
    traits = set(start)
    for kind in passes:
        if not (traits & kind.accepts) or kind.refuses & traits or not kind.requires <= traits:
            return False
        traits |= kind.provides
        if kind.produces is not None:
            traits = (traits - FORMATS) | {kind.produces}
    return True


def select_passes(names: tuple[str, ...] | None, tags: tuple[str, ...], exclude_tags: tuple[str, ...]) -> list[str]:
    """The pass menu: the passes named, or else those with one of `tags` and none of `exclude_tags`."""
    if names is not None:
        return [get_pass(name).name for name in names]  # unknown names fail here, with the closest one
    if unknown := (set(tags) | set(exclude_tags)) - TAGS:
        raise ConfigError(f"unknown pass tags {sorted(unknown)} in search", f"tags: {', '.join(sorted(TAGS))}")
    return [name for name, kind in registered_passes().items()
            if kind.tags & set(tags) and not kind.tags & set(exclude_tags)]


def default_space(menu: list[str], target: str, start: frozenset[str],
                  user_space: Mapping[str, Any] | None = None) -> RecipeSpace:
    """The space of the menu's passes that suit the runtime target and the model (by the traits it starts with),
    with each pass's declared ranges, overridden by the task's own `search.space`."""
    torch_target = target in ("torch", "torch.cuda", "torch.compile")
    allowed = {get_pass(name) for name in menu if get_pass(name).available()}
    allowed = {kind for kind in allowed if kind.requires <= start
               and (kind.runs_only_on in (None, target) or target == "auto")
               and not (kind.produces is not None and (torch_target or kind.produces in start))
               and not (torch_target and "torch" not in kind.accepts)}
    slots = {stage: tuple(sorted(kind.name for kind in allowed if kind.stage == stage)) for stage in STAGES}
    slots = {stage: passes for stage, passes in slots.items() if passes}
    params: dict[str, Distribution] = {}
    for stage, names in slots.items():
        for name in names:
            for option, distribution in get_pass(name).space.items():
                key = f"{stage}__{option}"
                if params.setdefault(key, distribution) != distribution:
                    raise RuntimeError(f"passes of stage '{stage}' declare different ranges for '{option}'")
    for key, raw in (user_space or {}).items():
        stage, _, option = key.partition("__")
        if not any(option in get_pass(p).Config.model_fields and option != "version" for p in slots.get(stage, ())):
            known = sorted({f"{s}__{f}" for s, names in slots.items() for p in names
                            for f in get_pass(p).Config.model_fields if f != "version"})
            raise ConfigError(f"search.space names '{key}', which no pass in this search has",
                              f"names that exist: {', '.join(known)}")
        distribution = params[key] = parse_range(key, raw)
        ends = distribution.values if isinstance(distribution, Choice) else (distribution.low, distribution.high)
        for name in (p for p in slots[stage] if option in get_pass(p).Config.model_fields):
            for value in ends:  # a value the pass refuses fails here, not trials later
                validate(get_pass(name).Config, {option: value}, f"search.space.{key} for pass '{name}'")
    onnx_target = target in ("onnxruntime", "openvino")
    required = frozenset(stage for stage, names in slots.items()
                         if onnx_target and "torch" in start and all(get_pass(p).produces == "onnx" for p in names))
    return RecipeSpace(slots=slots, start=start, params=params, required=required)
