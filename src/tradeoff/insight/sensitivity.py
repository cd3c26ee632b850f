"""Which layers hurt: the metric drop on validation when one layer alone is quantized or pruned, measured on the
real model and data, never estimated from weight statistics.

Each quantization step of the spec runs with every other layer kept in float (its `keep_float`), so the drop is
that layer's alone; pruning zeroes the given fraction of one layer's smallest weights, without fine-tuning (what a
layer can bear before any recovery: the ranking the search needs, not the accuracy a pruned model ends at).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper
from torch.nn.utils import prune

from tradeoff.config import SensitivitySpec, Task
from tradeoff.context import Context
from tradeoff.data import DataBundle
from tradeoff.errors import TradeoffError
from tradeoff.evaluation import Evaluator
from tradeoff.layers import layer_of, weight_inputs, weight_layers
from tradeoff.metrics import get_metric
from tradeoff.model import ModelHandle
from tradeoff.passes import build_pass, get_pass, load_plugins
from tradeoff.problem import GivenModel, Subject, problem
from tradeoff.report.sensitivity import render_sensitivity_html
from tradeoff.rundir import RunDir, write_atomic, write_json
from tradeoff.runlog import step_progress

SPLIT = "val"  # sensitivity decides what the search keeps: it reads validation, never test
DEFAULT_QUANTIZE = ({"pass": "quantize.static"}, {"pass": "quantize.weight_only", "bits": 4})  # int8, 4-bit weights


def quantize_steps(spec: SensitivitySpec) -> tuple[dict[str, Any], ...]:
    return DEFAULT_QUANTIZE if spec.quantize is None else spec.quantize


@dataclass(frozen=True)
class LayerSensitivity:
    layer: str
    kind: str
    params: int
    drops: dict[str, float | None]  # treatment -> metric drop on validation (None: the treatment cannot touch it)
    # treatment -> how far the outputs moved: mean squared change over the outputs' variance (a finer signal than a
    # metric on a few hundred samples, which often does not move at all: it breaks the ranking's ties)
    deviations: dict[str, float | None]


@dataclass(frozen=True)
class Sensitivity:
    metric: str
    baseline: float  # the metric on validation, untouched
    treatments: tuple[str, ...]  # "quantize.static", "quantize.weight_only bits=4", "prune 80%", ...
    layers: tuple[LayerSensitivity, ...]
    notes: tuple[str, ...] = field(default=())  # a treatment that could not run on this model, and why

    def ranking(self, kind: str) -> tuple[str, ...]:
        """Layers from the most to the least sensitive to `kind` ("quantize" or "prune"): by their worst drop under
        that kind's treatments, then by how far their outputs moved; a layer none of them touched is left out."""
        def worst(layer: LayerSensitivity) -> tuple[float, float]:
            drops = [(d, layer.deviations[t] or 0.0) for t, d in layer.drops.items()
                     if t.startswith(kind) and d is not None]
            return max(d for d, _ in drops), max(m for _, m in drops)

        touched = [layer for layer in self.layers
                   if any(t.startswith(kind) and d is not None for t, d in layer.drops.items())]
        return tuple(layer.layer for layer in sorted(touched, key=worst, reverse=True))

    def rankings(self) -> dict[str, tuple[str, ...]]:
        """What a search may spare, most sensitive first: layers kept in float, at 8 bits where the rest take 4, with
        a scale per channel where the rest take one, and kept dense."""
        quantize = self.ranking("quantize")
        return {"keep_float": quantize, "eight_bit": quantize, "per_channel_layers": quantize,
                "keep_dense": self.ranking("prune")}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Sensitivity:
        return cls(raw["metric"], raw["baseline"], tuple(raw["treatments"]),
                   tuple(LayerSensitivity(**layer) for layer in raw["layers"]), tuple(raw.get("notes", ())))


def treatment_name(step: Mapping[str, Any]) -> str:
    options = " ".join(f"{k}={v}" for k, v in step.items() if k != "pass")
    return f"{step['pass']} {options}".strip()


def measure_sensitivity(model: ModelHandle, evaluator: Evaluator, ctx: Context, spec: SensitivitySpec,
                        quiet: bool = True) -> Sensitivity:
    """Every layer with weights under each treatment of `spec`, alone, with a progress bar unless `quiet`."""
    total = len(weight_layers(model)) * (len(quantize_steps(spec)) + len(spec.prune))
    with step_progress("layer sensitivity", total, quiet) as progress:
        return _measure(model, evaluator, ctx, spec, progress)


def _measure(model: ModelHandle, evaluator: Evaluator, ctx: Context, spec: SensitivitySpec,
             progress: Callable[[str], None]) -> Sensitivity:
    """A torch model's quantization treatments run on its ONNX export (the layers keep their names there)."""
    metric, reference, targets = evaluator.metric, evaluator.reference[SPLIT], evaluator.data.val.y
    baseline = metric(reference, targets, reference)
    spread = float(np.mean((reference - reference.mean(axis=0)) ** 2)) or 1.0
    layers = weight_layers(model)
    drops: dict[str, dict[str, float | None]] = {layer.name: {} for layer in layers}
    deviations: dict[str, dict[str, float | None]] = {layer.name: {} for layer in layers}
    treatments: list[str] = []
    notes: list[str] = []

    def measure(layer: str, treatment: str, built: ModelHandle | None) -> None:
        outputs = None if built is None else evaluator.outputs(built, SPLIT)
        drops[layer][treatment] = None if outputs is None else metric.drop(baseline, metric(outputs, targets,
                                                                                             reference))
        deviations[layer][treatment] = None if outputs is None else float(np.mean((outputs - reference) ** 2)) / spread
        progress(f"{treatment}: {layer}")

    quantizable = _onnx_form(model, ctx, notes) if quantize_steps(spec) else None
    present = [layer.name for layer in weight_layers(quantizable)] if quantizable is not None else []
    for step in quantize_steps(spec):
        name = treatment_name(step)
        treatments.append(name)
        for layer in layers:
            measure(layer.name, name, _quantized_alone(quantizable, present, step, layer.name, ctx, notes))
    for amount in spec.prune:
        name = f"prune {amount:.0%}"
        treatments.append(name)
        for layer in layers:
            measure(layer.name, name, pruned_alone(model, layer.name, amount))
    return Sensitivity(metric.name, baseline, tuple(treatments),
                       tuple(LayerSensitivity(layer.name, layer.kind, layer.params, drops[layer.name],
                                              deviations[layer.name])
                             for layer in layers), tuple(dict.fromkeys(notes)))


def _onnx_form(model: ModelHandle, ctx: Context, notes: list[str]) -> ModelHandle | None:
    if model.format == "onnx":
        return model
    try:
        return build_pass({"pass": "export.onnx"}).apply(model, ctx)
    except Exception as exc:  # an exporter fails on many kinds of model code
        notes.append(f"quantization treatments skipped: the model does not export to ONNX ({type(exc).__name__})")
        return None


def _quantized_alone(model: ModelHandle | None, present: list[str], step: Mapping[str, Any], layer: str,
                     ctx: Context, notes: list[str]) -> ModelHandle | None:
    """`model` (ONNX) with `step` applied to `layer` alone (every other layer kept in float); None where the step does
    not touch that layer (weight-only quantization takes MatMul layers only; a module the graph does not use) or
    cannot run."""
    if model is None or layer not in present:
        return None
    others = tuple(other for other in present if other != layer)
    kind = get_pass(step["pass"])
    if "keep_float" not in kind.Config.model_fields:
        raise TradeoffError(f"sensitivity.quantize names {step['pass']}, which cannot keep layers in float",
                            "use quantize.static, quantize.dynamic or quantize.weight_only")
    try:
        built = build_pass({**step, "keep_float": others}).apply(model, ctx)
    except TradeoffError as exc:
        notes.append(f"{treatment_name(step)} on {layer}: {exc}")
        return None
    return None if _untouched(built, layer) else built


def _untouched(model: ModelHandle, layer: str) -> bool:
    """Whether the quantizer left the layer's weight as a float initializer read by a float weight operator."""
    graph = model.onnx_model().graph
    float_weights = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    return any(weight in float_weights and layer_of(weight) == layer for _, weight in weight_inputs(graph))


def pruned_alone(model: ModelHandle, layer: str, amount: float) -> ModelHandle:
    """`model` with the smallest-magnitude `amount` of `layer`'s weights set to zero, nothing else changed."""
    if model.format == "torch":
        module = copy.deepcopy(model.torch_module())
        target = dict(module.named_modules())[layer]
        prune.l1_unstructured(target, "weight", amount=amount)
        prune.remove(target, "weight")
        return model.with_module(module)
    graph = copy.deepcopy(model.onnx_model())
    names = {weight for _, weight in weight_inputs(graph.graph) if layer_of(weight) == layer}
    for tensor in graph.graph.initializer:
        if tensor.name in names:
            weights = numpy_helper.to_array(tensor).copy()
            cut = np.quantile(np.abs(weights), amount)
            weights[np.abs(weights) <= cut] = 0
            tensor.CopyFrom(numpy_helper.from_array(weights, tensor.name))
    return model.with_onnx(graph)


def sensitivity(subject: Subject | None = None, /, *, task: Task | str | Path | None = None,
                model: GivenModel | None = None, data: DataBundle | None = None, out: str | Path = "runs",
                quiet: bool = False, **settings: Any) -> Sensitivity:
    """Per-layer sensitivity of a task's model (or a model with `data=` and settings, as optimize takes them), by the
    task's `search.sensitivity` (or its defaults); writes runs/<name>/sensitivity.json and sensitivity.html."""
    given = problem(subject, task=task, model=model, data=data, where="sensitivity()", **settings)
    config = given.settings
    spec = config.search.sensitivity or SensitivitySpec()
    metric = get_metric(config.metric, given.search_dirs)
    load_plugins(config.search.plugins, given.search_dirs)
    evaluator = Evaluator(given.model, given.data, metric, config.runtime.threads, config.runtime.batch_sizes,
                          timing_s=config.runtime.timing_s)
    ctx = Context(data=given.data, seed=config.search.seed, threads=config.runtime.threads, teacher=given.model,
                  metric=metric)
    found = measure_sensitivity(given.model, evaluator, ctx, spec, quiet)
    run_dir = RunDir(Path(out) / config.name)
    write_json(run_dir.sensitivity_json, found.as_dict())
    write_atomic(run_dir.sensitivity_html, render_sensitivity_html(config.name, found.as_dict()))
    return found
