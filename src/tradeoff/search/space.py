"""Recipe spaces: ordered slots of candidate passes plus `slot__field` distributions.

A parameter is sampled exactly when the pass chosen for its slot has a config field of that name; no other
rule decides whether something is searched. The flat dict of a trial's params is the recipe's address. The
empty recipe is never a candidate: it is the baseline, measured apart.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna

from tradeoff.model import Format
from tradeoff.passes import get_pass
from tradeoff.recipe import Recipe

NONE = "none"


@dataclass(frozen=True)
class Choice:
    values: tuple[Any, ...]

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.values))


@dataclass(frozen=True)
class Float:
    low: float
    high: float
    log: bool = False

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return trial.suggest_float(name, self.low, self.high, log=self.log)


@dataclass(frozen=True)
class Int:
    low: int
    high: int
    log: bool = False

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return trial.suggest_int(name, self.low, self.high, log=self.log)


Distribution = Choice | Float | Int


@dataclass(frozen=True)
class Space:
    slots: dict[str, tuple[str, ...]]
    params: dict[str, Distribution] = field(default_factory=dict)
    required: frozenset[str] = frozenset()

    @property
    def passes(self) -> set[str]:
        return {p for passes in self.slots.values() for p in passes}

    def sample(self, trial: optuna.Trial, start: Format) -> Recipe | None:
        """The recipe a trial's suggestions spell; None when it is empty or its passes cannot follow one another."""
        return self._recipe(lambda name, distribution: distribution.suggest(trial, name), start)

    def grid(self, start: Format) -> list[dict[str, Any]] | None:
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
        return [p for p in points if self.recipe_at(p, start) is not None]

    def recipe_at(self, params: dict[str, Any], start: Format) -> Recipe | None:
        return self._recipe(lambda name, _: params[name], start)

    def single_pass_points(self, slot: str, start: Format) -> list[dict[str, Any]]:
        """Trial params for each pass of `slot` alone, with and without export and graph fusion where those can
        run: the cheap, interpretable candidates a search should measure before it explores compositions.
        Their options are left to the sampler."""
        companions = [[(other, choice) for choice in self._choices(other)] for other in ("export", "graph")
                      if other in self.slots and len(self._choices(other)) > 1]
        points = []
        for chosen in self.slots.get(slot, ()):
            for extra in itertools.product(*companions):
                point = {other: chosen if other == slot else NONE
                         for other in self.slots if len(self._choices(other)) > 1}
                point.update(dict(extra))
                if self.recipe_at({**point, **self._defaults(slot, chosen)}, start) is not None:
                    points.append(point)
        return points

    def extensions(self, params: dict[str, Any], start: Format) -> list[dict[str, Any]]:
        """`params` with one more pass in a slot after its last chosen one: the next steps worth trying on a
        recipe that already did well (the new pass's options are left to the sampler)."""
        slots = list(self.slots)
        last = max((i for i, slot in enumerate(slots) if params.get(slot, NONE) != NONE), default=-1)
        points = []
        for slot in slots[last + 1:]:
            for name in self.slots[slot] if len(self._choices(slot)) > 1 else ():
                point = {**params, slot: name}
                if self.recipe_at({**point, **self._defaults(slot, name)}, start) is not None:
                    points.append(point)
        return points

    def _defaults(self, slot: str, chosen: str) -> dict[str, Any]:
        fields = get_pass(chosen).Config.model_fields
        return {key: fields[key.partition("__")[2]].default for key in self._keys(slot, chosen)}

    def _choices(self, slot: str) -> tuple[str, ...]:
        return self.slots[slot] if slot in self.required else (NONE, *self.slots[slot])

    def _keys(self, slot: str, chosen: str) -> list[str]:
        """The `slot__field` parameters that apply when `chosen` fills `slot`."""
        if chosen == NONE:
            return []
        fields = get_pass(chosen).Config.model_fields
        return [k for k in self.params if k.partition("__")[0] == slot and k.partition("__")[2] in fields]

    def _recipe(self, value: Callable[[str, Distribution], Any], start: Format) -> Recipe | None:
        steps: list[dict[str, Any]] = []
        for slot in self.slots:
            choices = self._choices(slot)
            chosen = value(slot, Choice(choices)) if len(choices) > 1 else choices[0]
            if chosen != NONE:
                steps.append({"pass": chosen, **{k.partition("__")[2]: value(k, self.params[k])
                                                 for k in self._keys(slot, chosen)}})
        return Recipe(steps=tuple(steps)) if steps and _compatible(steps, start) else None


def _compatible(steps: list[dict[str, Any]], start: Format) -> bool:
    current, earlier = start, set[str]()
    for step in steps:
        kind = get_pass(step["pass"])
        if current not in kind.accepts or kind.refuses_after & earlier:
            return False
        earlier.add(step["pass"])
        if step["pass"] == "export.onnx":
            current = "onnx"
    return True


# The order passes compose in: torch-side compression first, then export, then quantization.
DEFAULT_SLOTS: dict[str, tuple[str, ...]] = {
    "fuse": ("fuse.batchnorm",),
    "prune": ("prune.magnitude", "prune.structured", "prune.nm", "prune.ffn", "prune.heads", "prune.layers"),
    "lowrank": ("lowrank.svd",),
    "qat": ("quantize.qat",),
    "cluster": ("cluster.weights",),
    "export": ("export.onnx",),
    "graph": ("fuse.transformer",),
    "quantize": ("quantize.dynamic", "quantize.static", "quantize.nncf", "quantize.fp16", "quantize.bf16",
                 "quantize.weight_only"),
    "embedding": ("quantize.embedding",),
}
TRANSFORMER_ONLY = frozenset({"fuse.transformer", "prune.ffn", "prune.heads", "prune.layers", "quantize.embedding"})
DEFAULT_PARAMS: dict[str, Distribution] = {
    "prune__sparsity": Float(0.5, 0.98),
    "prune__schedule": Choice(("one_shot", "gradual")),
    "prune__amount": Float(0.2, 0.7),
    "prune__criterion": Choice(("l1", "l2", "taylor")),
    "lowrank__energy": Float(0.6, 0.99),
    "cluster__bits": Int(3, 6),
    "quantize__per_channel": Choice((False, True)),
    "quantize__calibration": Choice(("minmax", "entropy", "percentile")),
    "quantize__bits": Choice((4, 8)),
    "embedding__block_size": Choice((32, 64)),  # 128 saves 0.4 MB more on MiniLM but costs min cosine 0.99 -> 0.97
}


def default_space(menu: tuple[str, ...], target: str, start: Format, transformer: bool = False) -> Space:
    """The default space restricted to the task's pass menu, runtime target and kind of model."""
    allowed = {get_pass(name).name for name in menu if get_pass(name).available()}  # unknown names fail here
    if not transformer:
        allowed -= TRANSFORMER_ONLY
    allowed = {p for p in allowed if get_pass(p).runs_only_on in (None, target) or target == "auto"}
    torch_target = target in ("torch", "torch.cuda", "torch.compile")
    if torch_target or start == "onnx":
        allowed.discard("export.onnx")
    if torch_target:
        allowed = {p for p in allowed if "torch" in get_pass(p).accepts}
    slots = {slot: tuple(p for p in passes if p in allowed) for slot, passes in DEFAULT_SLOTS.items()}
    slots = {slot: passes for slot, passes in slots.items() if passes}
    onnx_target = target in ("onnxruntime", "openvino")
    required = frozenset({"export"} if onnx_target and start == "torch" and "export" in slots else ())
    return Space(slots=slots, params=DEFAULT_PARAMS, required=required)
