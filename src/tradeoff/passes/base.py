"""The Pass contract and the one registry that recipes resolve pass names through."""

from __future__ import annotations

import contextlib
import difflib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from tradeoff.data import DataBundle, Split
from tradeoff.errors import ConfigError, ModelError
from tradeoff.evaluation import predict
from tradeoff.metrics import Metric
from tradeoff.model import Format, ModelHandle
from tradeoff.runtimes import runtime_for
from tradeoff.training import HiddenStateDistillation, fit
from tradeoff.validation import validate


class PassConfig(BaseModel):
    """A pass's options: frozen, unknown keys rejected, every field with a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class FinetuneConfig(PassConfig):
    """Options of the recovery step that passes which damage accuracy (pruning, sharing) run afterwards."""

    finetune_epochs: int = Field(default=3, ge=0)
    lr: float = Field(default=1e-3, gt=0.0)


@dataclass(frozen=True)
class Context:
    """What a pass may use besides its input model; passes never reach for globals."""

    data: DataBundle
    seed: int = 0
    threads: int = 1
    teacher: ModelHandle | None = None
    progress: Callable[[str], None] | None = None
    metric: Metric | None = None  # the task's metric, for passes that check it while they work

    def finetune(self, module: nn.Module, config: FinetuneConfig, after_step: Callable[[], None] | None = None,
                 hidden_state_weight: float = 0.0) -> None:
        """Recover accuracy on the training split; no-op for 0 epochs.

        Early stopping watches a seeded tenth of the training split, never the validation split: the search
        decides on validation, so a candidate must not have been tuned against it. A positive
        `hidden_state_weight` adds the distance of every encoder layer's hidden states to the teacher's.
        """
        if not config.finetune_epochs:
            return
        train, holdout = self.data.train_holdout()
        if not self.data.labelled:  # no labels (embeddings): learn the original model's outputs instead
            train, holdout = self.with_teacher_targets(train), self.with_teacher_targets(holdout)
        distillation: contextlib.AbstractContextManager[HiddenStateDistillation | None] = contextlib.nullcontext()
        if hidden_state_weight > 0:
            teacher = self._require_teacher("distilling hidden states").torch_module()
            distillation = HiddenStateDistillation(module, teacher, hidden_state_weight)
        with distillation as extra_loss:
            fit(module, train, holdout, epochs=config.finetune_epochs, lr=config.lr,
                patience=config.finetune_epochs, seed=self.seed, after_step=after_step, extra_loss=extra_loss)

    def _require_teacher(self, purpose: str) -> ModelHandle:
        if self.teacher is None:
            raise ModelError(f"{purpose} needs the original model as teacher",
                             "pass Context(teacher=the original model)")
        return self.teacher

    def teacher_outputs(self, split: Split, purpose: str) -> np.ndarray:
        teacher = self._require_teacher(purpose)
        return predict(runtime_for(teacher).load(teacher, self.threads), split).astype(np.float32)

    def with_teacher_targets(self, split: Split) -> Split:
        """The split with the teacher's outputs as regression targets: distillation through the same loop."""
        return Split(split.x, self.teacher_outputs(split, "fine-tuning on unlabelled data"))


class Pass(ABC):
    """Turns a model into a cheaper model. `apply` never mutates its input handle."""

    name: ClassVar[str]
    Config: ClassVar[type[PassConfig]]
    accepts: ClassVar[frozenset[Format]]
    runs_only_on: ClassVar[str | None] = None  # the one runtime that can run what the pass makes, if only one
    refuses_after: ClassVar[frozenset[str]] = frozenset()  # passes whose output it cannot take: never paired

    def __init__(self, config: PassConfig | None = None) -> None:
        self.config = config if config is not None else self.Config()

    @classmethod
    def available(cls) -> bool:
        """False where an optional package the pass needs is not installed; the search then leaves it out."""
        return True

    @abstractmethod
    def apply(self, model: ModelHandle, ctx: Context) -> ModelHandle: ...

    def restructure(self, module: nn.Module, state: dict[str, Any]) -> nn.Module:
        """Rebuild the module structure this pass produced, so a saved state dict can be loaded into it.

        Only passes that change a torch model's module types or shapes override it; they record `state`
        (JSON-able: which channels were removed, which ranks were kept) with `ModelHandle.with_module`.
        """
        raise ModelError(f"pass '{self.name}' does not change a torch model's structure")

    def step(self) -> dict[str, Any]:
        return {"pass": self.name, **self.config.model_dump(mode="json")}

    def check_input(self, model: ModelHandle) -> None:
        if model.format not in self.accepts:
            fix = "put export.onnx before it" if "onnx" in self.accepts else "put it before export.onnx"
            raise ModelError(f"pass '{self.name}' cannot handle a {model.format} model", fix)


P = TypeVar("P", bound=type[Pass])
_REGISTRY: dict[str, type[Pass]] = {}


def register(cls: P) -> P:
    if cls.name in _REGISTRY:
        raise RuntimeError(f"pass '{cls.name}' registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def registered_passes() -> dict[str, type[Pass]]:
    return dict(sorted(_REGISTRY.items()))


def get_pass(name: str) -> type[Pass]:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known passes: {', '.join(sorted(_REGISTRY))}"
        raise ConfigError(f"unknown pass '{name}'", hint)
    return _REGISTRY[name]


def build_pass(step: dict[str, Any]) -> Pass:
    """Instantiate a pass from a recipe step such as {'pass': 'quantize.static', 'calibration': 'entropy'}."""
    options = dict(step)
    name = options.pop("pass", None)
    if not isinstance(name, str):
        raise ConfigError(f"recipe step {step} has no 'pass' name", "write it as {pass: NAME, ...options}")
    cls = get_pass(name)
    return cls(validate(cls.Config, options, f"pass '{name}'"))
