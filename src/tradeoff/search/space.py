"""Recipe spaces: ordered slots of candidate passes plus `slot__field` distributions.

A parameter is sampled exactly when the pass chosen for its slot has a config field of that name; no other
rule decides whether something is searched. The flat dict of a trial's params is the recipe's address.
"""

from __future__ import annotations

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

    def sample(self, trial: optuna.Trial, start: Format) -> Recipe | None:
        """The recipe a trial's suggestions spell, or None when its passes cannot follow one another."""
        steps: list[dict[str, Any]] = []
        for slot, passes in self.slots.items():
            choices = passes if slot in self.required else (NONE, *passes)
            chosen = Choice(choices).suggest(trial, slot) if len(choices) > 1 else choices[0]
            if chosen == NONE:
                continue
            fields = get_pass(chosen).Config.model_fields
            step = {"pass": chosen}
            for key, distribution in self.params.items():
                prefix, _, name = key.partition("__")
                if prefix == slot and name in fields:
                    step[name] = distribution.suggest(trial, key)
            steps.append(step)
        return Recipe(steps=tuple(steps)) if _compatible(steps, start) else None


def _compatible(steps: list[dict[str, Any]], start: Format) -> bool:
    current = start
    for step in steps:
        if current not in get_pass(step["pass"]).accepts:
            return False
        if step["pass"] == "export.onnx":
            current = "onnx"
    return True


# The order passes compose in; later issues add slots (prune, cluster, lowrank) before export.
DEFAULT_SLOTS: dict[str, tuple[str, ...]] = {
    "export": ("export.onnx",),
    "quantize": ("quantize.dynamic", "quantize.static", "quantize.fp16"),
}
DEFAULT_PARAMS: dict[str, Distribution] = {
    "quantize__per_channel": Choice((False, True)),
    "quantize__calibration": Choice(("minmax", "entropy", "percentile")),
}


def default_space(menu: tuple[str, ...], target: str, start: Format) -> Space:
    """The default space restricted to the task's pass menu and runtime target."""
    allowed = set(menu)
    if target == "torch" or start == "onnx":
        allowed.discard("export.onnx")
    if target == "torch":
        allowed = {p for p in allowed if "torch" in get_pass(p).accepts}
    slots = {slot: tuple(p for p in passes if p in allowed) for slot, passes in DEFAULT_SLOTS.items()}
    slots = {slot: passes for slot, passes in slots.items() if passes}
    required = frozenset({"export"} if target == "onnxruntime" and start == "torch" and "export" in slots else ())
    return Space(slots=slots, params=DEFAULT_PARAMS, required=required)
