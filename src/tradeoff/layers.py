"""Layers by one name across formats: a torch module's name ("layers.0") is also the name of its weight in the
exported ONNX graph ("layers.0.weight", kept by the exporter and by ONNX Runtime's rewrites, which append to it:
"layers.0.weight_Transposed"), so a layer measured on one format is addressed on the other. A graph from elsewhere
names its layers by its weight initializers."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper
from torch import nn

from tradeoff.errors import ModelError
from tradeoff.model import ModelHandle

WEIGHT_OPERATORS = ("Gemm", "MatMul", "Conv", "ConvTranspose")  # what the quantizers rewrite
WEIGHT_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_WEIGHT_SUFFIX = re.compile(r"\.weight(_\w+)?$")


@dataclass(frozen=True)
class Layer:
    name: str
    kind: str  # the module class or ONNX operator: Linear, Conv2d, Gemm, MatMul, ...
    params: int  # weights in the layer's weight tensor


def layer_of(weight: str) -> str:
    """The layer a weight tensor belongs to: its name less the ".weight" suffix (and what a rewrite appended)."""
    return _WEIGHT_SUFFIX.sub("", weight)


def weight_inputs(graph: onnx.GraphProto) -> list[tuple[onnx.NodeProto, str]]:
    """Each node of a weight operator with the name of its weight input (the second: B of Gemm and MatMul, W of
    Conv), in graph order; whether that input is a stored tensor is the caller's question."""
    return [(node, node.input[1]) for node in graph.node if node.op_type in WEIGHT_OPERATORS and len(node.input) > 1]


def weight_layers(model: ModelHandle) -> list[Layer]:
    """The layers with a weight matrix or kernel, in graph order: what quantizers and pruners act on."""
    if model.format == "torch":
        return [Layer(name, type(m).__name__, m.weight.numel()) for name, m in model.torch_module().named_modules()
                if isinstance(m, WEIGHT_MODULES)]
    graph = model.onnx_model().graph
    sizes = {t.name: math.prod(t.dims) for t in graph.initializer}
    layers: dict[str, Layer] = {}
    for node, weight in weight_inputs(graph):
        if weight in sizes:
            layers.setdefault(layer_of(weight), Layer(layer_of(weight), node.op_type, sizes[weight]))
    return list(layers.values())


def nodes_of_layers(graph: onnx.ModelProto, layers: tuple[str, ...], where: str) -> list[str]:
    """The names of the graph's nodes that compute with the named layers' weights (a node name is accepted too);
    a name that matches nothing is an error: the quantizer would skip it silently and the layer would not be the
    one kept in float that the recipe says."""
    initializers = {t.name for t in graph.graph.initializer}
    found: dict[str, list[str]] = {layer: [] for layer in layers}
    for node in graph.graph.node:
        for layer in layers:
            weights = [i for i in node.input[1:] if i in initializers and layer_of(i) == layer]
            if weights or node.name == layer:
                found[layer].append(node.name)
    if missing := [layer for layer, nodes in found.items() if not nodes]:
        known = sorted({layer_of(weight) for _, weight in weight_inputs(graph.graph) if weight in initializers})
        raise ModelError(f"{where} names layers {missing} that this graph does not have",
                         f"name layers among {', '.join(known) or 'none: the graph has no weight layer'}")
    return [node for nodes in found.values() for node in nodes]


def name_weights_after_modules(graph: onnx.ModelProto, module: nn.Module) -> None:
    """Rename, in place, the weight initializers an exporter named after nothing ("onnx::MatMul_771": the TorchScript
    exporter does so for the transposed weights of a Linear) after the module they hold ("encoder.layer.0.output.
    dense.weight_Transposed"), found by equal values, so a layer keeps its torch name in the graph."""
    layers = {name for name, _ in module.named_modules()}
    by_value: dict[tuple[tuple[int, ...], bytes], str] = {}
    for name, layer in module.named_modules():
        if isinstance(layer, WEIGHT_MODULES):
            weight = layer.weight.detach().float().numpy()
            by_value.setdefault((weight.shape, weight.tobytes()), f"{name}.weight")
            if weight.ndim == 2:
                by_value.setdefault((weight.T.shape, np.ascontiguousarray(weight.T).tobytes()),
                                    f"{name}.weight_Transposed")
    weights = {weight for _, weight in weight_inputs(graph.graph)}
    renamed: dict[str, str] = {}
    taken = {t.name for t in graph.graph.initializer}
    for tensor in graph.graph.initializer:
        if tensor.name not in weights or layer_of(tensor.name) in layers or tensor.data_type != onnx.TensorProto.FLOAT:
            continue
        values = numpy_helper.to_array(tensor)
        found = by_value.get((values.shape, values.tobytes()))
        if found is not None and found not in taken:
            renamed[tensor.name] = tensor.name = found
            taken.add(found)
    for node in graph.graph.node:
        node.input[:] = [renamed.get(i, i) for i in node.input]
