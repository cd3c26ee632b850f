"""A recipe is an ordered list of pass steps: replayable, printable, comparable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tradeoff.errors import ConfigError
from tradeoff.model import ModelHandle
from tradeoff.passes import Context, build_pass
from tradeoff.runtimes import RUNTIMES
from tradeoff.validation import read_yaml, validate

RECIPE_VERSION = 1


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = RECIPE_VERSION
    steps: tuple[dict[str, Any], ...] = ()
    runtime: str | None = None  # where the result runs fastest, chosen by measurement when the target is auto
    threads: int | None = Field(default=None, ge=1)  # the threads it runs fastest with, where fewer than the task's

    @field_validator("steps")
    @classmethod
    def _steps_name_known_passes(cls, steps: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], ...]:
        """Normalise every step through its pass config, so equal recipes compare and hash equal."""
        return tuple(build_pass(step).step() for step in steps)

    @field_validator("runtime")
    @classmethod
    def _runtime_is_known(cls, runtime: str | None) -> str | None:
        if runtime is not None and runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime '{runtime}'; known: {', '.join(RUNTIMES)}")
        return runtime

    @property
    def passes(self) -> list[str]:
        return [step["pass"] for step in self.steps]

    def key(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def apply(self, model: ModelHandle, ctx: Context) -> ModelHandle:
        for step in self.steps:
            model = build_pass(step).apply(model, ctx)
        return self.on_its_runtime(model)

    def on_its_runtime(self, model: ModelHandle) -> ModelHandle:
        """The built model on the runtime and threads the recipe names; where it names no runtime, on the one its
        last pass chose (quantize.bf16 runs only on OpenVINO), else its format's default."""
        if self.runtime is None and self.threads is None:
            return model
        return model.with_runtime(self.runtime or model.runtime, self.threads)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    @classmethod
    def from_dict(cls, raw: Any, where: str = "recipe") -> Recipe:
        if raw is None:
            raise ConfigError(f"{where} is empty", "write a mapping with 'steps'")
        if isinstance(raw, dict) and raw.get("version", RECIPE_VERSION) != RECIPE_VERSION:
            raise ConfigError(f"{where} has version {raw['version']}, this tradeoff reads {RECIPE_VERSION}")
        return validate(cls, raw, where)

    @classmethod
    def load(cls, path: Path) -> Recipe:
        return cls.from_dict(read_yaml(path, "recipe file"), str(path))
