"""ModelHandle: the one thing passes take and return, whether it holds a torch module or an ONNX graph."""

from __future__ import annotations

import copy
import inspect
import json
import pickle
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast

import onnx
import torch
from onnx.external_data_helper import (
    ExternalDataInfo,
    _get_all_tensors,  # every tensor onnx itself would read external data for, subgraphs included
    load_external_data_for_model,
    uses_external_data,
)
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from torch.nn.utils import parametrize

from tradeoff import huggingface, sparse_storage
from tradeoff.config import ModelSpec
from tradeoff.errors import ConfigError, ModelError
from tradeoff.imports import import_object
from tradeoff.onnx_output import keep_scores_output

Format = Literal["torch", "onnx"]
ARTIFACT_META = "artifact.json"


@dataclass(frozen=True, eq=False)
class ModelHandle:
    """A model in one of the formats tradeoff runs, plus what is needed to rebuild a torch module's structure.

    `factory` and `structure_steps` let a saved torch state dict be loaded back: the factory builds the
    original architecture, and each structure step (a recipe step whose pass changed module types or shapes,
    with the state that pass recorded) is replayed on it before the weights are loaded.
    """

    module: nn.Module | None = None
    onnx_bytes: bytes | None = None
    factory: str | None = None
    factory_options: dict[str, Any] = field(default_factory=dict)  # the factory's keyword arguments
    structure_steps: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    runtime: str | None = None  # the runtime it was measured fastest on; None: its format's default
    threads: int | None = None  # the intra-op threads it ran fastest with, where fewer than the task's; None: those

    def __post_init__(self) -> None:
        if (self.module is None) == (self.onnx_bytes is None):
            raise ValueError("a ModelHandle holds exactly one of a torch module or an ONNX model")

    @property
    def format(self) -> Format:
        return "torch" if self.module is not None else "onnx"

    def torch_module(self) -> nn.Module:
        """A private copy of the module: passes transform copies, never the handle they were given."""
        if self.module is None:
            raise ModelError("this step needs a torch model but got an ONNX model", "put it before export.onnx")
        return copy.deepcopy(self.module)

    def onnx_model(self) -> onnx.ModelProto:
        if self.onnx_bytes is None:
            raise ModelError("this step needs an ONNX model but got a torch model", "put export.onnx before it")
        return onnx.load_from_string(self.onnx_bytes)

    def with_module(self, module: nn.Module, structure_step: dict[str, Any] | None = None,
                    structure_state: dict[str, Any] | None = None) -> ModelHandle:
        """A handle on `module`; a pass that changed the module's structure passes its recipe step and the
        JSON-able state its `restructure` needs to rebuild that structure when the artifact is loaded."""
        steps = self.structure_steps
        if structure_step is not None:
            steps += ({"step": structure_step, "state": structure_state or {}},)
        return replace(self, module=module.eval(), onnx_bytes=None, structure_steps=steps, runtime=None,
                       threads=None)

    def with_onnx(self, model: onnx.ModelProto | bytes) -> ModelHandle:
        data = model if isinstance(model, bytes) else model.SerializeToString()
        return replace(self, module=None, onnx_bytes=data, structure_steps=(), runtime=None, threads=None)

    def with_runtime(self, runtime: str | None, threads: int | None = None) -> ModelHandle:
        return replace(self, runtime=runtime, threads=threads)

    def threads_within(self, most: int) -> int:
        """The intra-op threads to run it with where `most` may be used: those it was measured fastest with (one
        thread runs a small graph faster than two: docs/NOTES.md), never more than `most`."""
        return min(self.threads or most, most)

    def save(self, directory: Path) -> Path:
        """Write the artifact file and its metadata into `directory`; return the artifact's path."""
        directory.mkdir(parents=True, exist_ok=True)
        if self.onnx_bytes is not None:
            artifact = directory / "model.onnx"
            artifact.write_bytes(self.onnx_bytes)
        else:
            state = self.module.state_dict()  # type: ignore[union-attr]
            if all(isinstance(v, torch.Tensor) and not v.is_quantized for v in state.values()):
                artifact = directory / "model.safetensors"
                tensors, metadata = sparse_storage.encode(state)
                save_file(tensors, str(artifact), metadata=metadata)
            else:
                artifact = directory / "model.pt"
                torch.save(state, artifact)
        meta = {"format": self.format, "artifact": artifact.name, "runtime": self.runtime, "threads": self.threads,
                "factory": self.factory, "factory_options": self.factory_options,
                "structure_steps": list(self.structure_steps)}
        (directory / ARTIFACT_META).write_text(json.dumps(meta, indent=2))
        return artifact


def materialize_parametrizations(module: nn.Module) -> nn.Module:
    """Turn every parametrized tensor (shared weights of cluster.weights) into a plain parameter, in place.

    For inference and for code that needs plain layers. Not torch's `remove_parametrizations`: it deletes the
    property from the parametrized class, which deep copies of the module share, breaking every other copy.
    """
    for layer in module.modules():
        if parametrize.is_parametrized(layer):
            names = list(cast(nn.ModuleDict, layer.parametrizations).keys())
            values = {name: getattr(layer, name).detach().clone() for name in names}
            layer.__class__ = layer.__class__.__bases__[0]
            del layer._modules["parametrizations"]
            for name, value in values.items():
                setattr(layer, name, nn.Parameter(value))
    return module


def read_weights(path: Path, allow_pickle: bool) -> Any:
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}", "check model.weights")
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as handle:
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - not a dict
                return sparse_storage.decode(tensors, handle.metadata())
        except Exception as exc:  # safetensors raises several private error types
            raise ModelError(f"cannot read safetensors file {path}: {exc}", "re-save the weights") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except pickle.UnpicklingError:
        raise ModelError(
            f"{path} holds Python objects that weights_only=True refuses to unpickle",
            "save a state dict or safetensors instead, or, if you trust the file, set model.allow_pickle: true "
            "(--allow-pickle)",
        ) from None
    except Exception as exc:  # torch.load fails on a file that is not its format in many ways (IndexError, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot read weights file {path}: {first}", "re-save it") from None


def load_state(module: nn.Module, state: Any, source: str) -> nn.Module:
    if isinstance(state, nn.Module):
        return state
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"{source} holds a {type(state).__name__}, not a state dict", "save model.state_dict()")
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k, v in expected.items() if isinstance(v, torch.Tensor) and isinstance(state.get(k), torch.Tensor)
             and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        parts = [f"missing {missing[:3]}" if missing else "", f"unexpected {unexpected[:3]}" if unexpected else "",
                 f"shape mismatch at {wrong[:3]}" if wrong else ""]
        raise ModelError(f"weights in {source} do not match the model: {'; '.join(p for p in parts if p)}",
                         "check that the factory builds the architecture the weights were trained with")
    module.load_state_dict(state)
    return module


def build_module(factory: str, search_dirs: tuple[Path, ...] = (), options: dict[str, Any] | None = None) -> nn.Module:
    """The module `factory` builds, called with `options` as keyword arguments (checked against its signature
    first, so a misspelled option is the user's one-line error, not a traceback)."""
    if factory.startswith(huggingface.FACTORY_PREFIX):
        return huggingface.build_from_factory(factory)
    build, options = import_object(factory, "model.factory", search_dirs), options or {}
    try:
        inspect.signature(build).bind(**options)
    except TypeError as exc:
        raise ConfigError(f"model.options {options} do not fit {factory}: {exc}",
                          "name the factory's own keyword arguments") from None
    except ValueError:  # a callable without a signature to check: call it and see
        pass
    module = build(**options)
    if not isinstance(module, nn.Module):
        raise ModelError(f"model.factory '{factory}' returned a {type(module).__name__}, not a torch nn.Module")
    return module


def read_onnx(path: Path) -> bytes:
    """An ONNX file as self-contained bytes, its external data (which must lie in the file's folder) read in."""
    if not path.is_file():
        raise ModelError(f"ONNX file not found: {path}", "check model.path")
    data = path.read_bytes()
    try:
        model = onnx.load_from_string(data)
        if external := [t for t in _get_all_tensors(model) if uses_external_data(t)]:
            _refuse_data_outside(path, external)
            load_external_data_for_model(model, str(path.parent))
            data = model.SerializeToString()
        onnx.checker.check_model(model)
    except ModelError:
        raise
    except Exception as exc:  # onnx raises DecodeError, ValidationError or OSError
        raise ModelError(f"{path} is not a valid ONNX model: {str(exc).splitlines()[0]}", "re-export it") from None
    return data


def load_onnx(path: Path, output: str | None = None) -> ModelHandle:
    """An ONNX file from any tool, cut to the one output of scores that tradeoff measures (`model.output`)."""
    return ModelHandle(onnx_bytes=keep_scores_output(read_onnx(path), output))


def _refuse_data_outside(path: Path, tensors: list[onnx.TensorProto]) -> None:
    """A tensor's external data lies beside the model or below it, never elsewhere: a model from a stranger must
    not make tradeoff read /etc/passwd or ../../secrets as weights."""
    folder = path.resolve().parent
    for tensor in tensors:
        location = ExternalDataInfo(tensor).location
        if Path(location).is_absolute() or not (folder / location).resolve().is_relative_to(folder):
            raise ModelError(f"{path}: tensor '{tensor.name}' keeps its data at '{location}', outside the model's "
                             "folder", "save the model with its external data in its own folder (a relative "
                             "location), or as one file")


def load_model(spec: ModelSpec, search_dirs: tuple[Path, ...] = ()) -> ModelHandle:
    if spec.source == "onnx":
        return load_onnx(Path(spec.path), spec.output)  # type: ignore[arg-type]
    if spec.source == "huggingface":
        factory = huggingface.hf_factory(Path(spec.path), spec.task)  # type: ignore[arg-type]
        return ModelHandle(module=huggingface.build_from_factory(factory), factory=factory)
    module = build_module(spec.factory, search_dirs, spec.options)  # type: ignore[arg-type]
    if spec.weights is not None:
        module = load_state(module, read_weights(Path(spec.weights), spec.allow_pickle), str(spec.weights))
    return ModelHandle(module=module.eval(), factory=spec.factory, factory_options=dict(spec.options))
