"""What optimize, evaluate and apply are given: a model, data and settings, from a task file or as Python objects.

The first argument of each is a task (a task file or a `Task`) or a model (an nn.Module, a ModelHandle, an .onnx
file or an artifact folder); a model comes with `data=` and the task file's settings as keywords.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from tradeoff.artifact import load_artifact
from tradeoff.config import Settings, Task, load_task, task_from_dict
from tradeoff.data import DataBundle, load_data
from tradeoff.errors import ConfigError, ModelError
from tradeoff.model import ModelHandle, load_model, load_onnx

GivenModel = nn.Module | ModelHandle | str | Path
Subject = Task | GivenModel

TASK_SUFFIXES = (".yaml", ".yml")
MODELS = "a torch module, a ModelHandle, an .onnx file or an artifact folder (best/)"
FIRST_ARGUMENT = f"a task file (.yaml), a Task, {MODELS}"


@dataclass(frozen=True)
class Problem:
    model: ModelHandle
    data: DataBundle
    settings: Settings  # a Task when one was given
    sources: dict[str, Any] = field(default_factory=dict)  # where a model given as an object and its data came from
    search_dirs: tuple[Path, ...] = ()  # where the task's own code (factories, metrics, plugins) is imported from

    @property
    def record(self) -> dict[str, Any]:
        """What runs/<name>/task.yaml keeps: the resolved settings and where the model and data came from."""
        return {**self.settings.model_dump(mode="json"), **self.sources}


def is_task(subject: object) -> bool:
    return isinstance(subject, Task) or (isinstance(subject, (str, Path)) and Path(subject).suffix in TASK_SUFFIXES)


def problem(subject: Subject | None = None, *, task: Task | str | Path | None = None, model: GivenModel | None = None,
            data: DataBundle | None = None, where: str = "optimize()", **settings: Any) -> Problem:
    """The problem a task or a model (first argument, or `task=` / `model=`) poses, loaded."""
    given = [g for g in (subject, task, model) if g is not None]
    if len(given) != 1:
        raise ConfigError(f"{where} takes one task or model, got {len(given)}", f"give {FIRST_ARGUMENT}")
    if task is not None or is_task(subject):
        if data is not None or settings:
            raise ConfigError(f"{where} takes either a task or a model with data= and settings, not both",
                              "put the settings in the task file")
        spec = given[0] if isinstance(given[0], Task) else load_task(given[0])  # type: ignore[arg-type]
        dirs = spec.import_dirs
        return Problem(load_model(spec.model, dirs), load_data(spec.data, dirs), spec, search_dirs=dirs)
    if data is None:
        raise ConfigError(f"{where} needs data= with a model", "pass a DataBundle, e.g. tradeoff.data.digits()")
    resolved = task_from_dict(settings, where=where, model=Settings)
    handle, described = load_given_model(given[0])  # type: ignore[arg-type]
    return Problem(handle, data, resolved, {"model": described, "data": data.spec.model_dump(mode="json")})


def load_given_model(model: GivenModel, search_dirs: tuple[Path, ...] = (),
                     output: str | None = None) -> tuple[ModelHandle, dict[str, Any]]:
    """A model given as an object or a path, and how task.yaml records where it came from; `output` names the
    output of scores of an ONNX file (model.output)."""
    if isinstance(model, nn.Module):
        return ModelHandle(module=model.eval()), {"source": "python",
                                                  "class": f"{type(model).__module__}.{type(model).__name__}"}
    if isinstance(model, ModelHandle):
        return model, {"source": "python", "format": model.format}
    if not isinstance(model, (str, Path)):
        raise ConfigError(f"cannot use a {type(model).__name__} as a model", f"give {MODELS}")
    path = Path(model)
    if not path.exists():
        raise ModelError(f"model not found: {path}", "check the path")
    if path.is_dir():
        return load_artifact(path, search_dirs), {"source": "artifact", "path": str(path)}
    if path.suffix == ".onnx":
        return load_onnx(path, output), {"source": "onnx", "path": str(path)}
    raise ModelError(f"cannot use {path} as a model", f"give {MODELS}")
