"""How fast, how big, how much compute: measured on the artifact itself, never estimated from the recipe."""

from __future__ import annotations

import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import onnx
import torch
import zstandard
from onnx import numpy_helper
from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.flop_counter import FlopCounterMode

from tradeoff.energy import Meter
from tradeoff.inputs import as_arrays, as_tensors
from tradeoff.model import ModelHandle
from tradeoff.scratch import scratch_directory


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p95_ms: float
    batch_size: int
    threads: int
    runs: int
    input_shape: tuple[int, ...] = ()  # of the first input as the model got it: texts' tokens after trimming
    cpu_s: float | None = None  # CPU seconds this process spent on the timed calls (all `runs` of them)
    energy_j: float | None = None  # RAPL energy over the timed calls, where readable (energy.py)
    rounds: int = 1  # interleaved timing rounds the figure comes from (Evaluator.interleaved_latency)


def threads_text(threads: int) -> str:
    """A thread count as reports and tables say it: '1 thread', '2 threads'."""
    return f"{threads} thread{'s' if threads > 1 else ''}"


WARMUP_S = 0.3  # of calls before a model's first timed call
# or this many calls, where sooner: 0.3 s is 15,000 calls of a 20 us MLP, and a search times each trial in rounds
WARMUP_CALLS = 200
MIN_RUNS = 20  # timed calls at the least, whatever the budget


def measure_latency(run: Callable[[np.ndarray], object], batch: np.ndarray, threads: int,
                    warmup_s: float = WARMUP_S, budget_s: float = 1.5, min_runs: int = MIN_RUNS,
                    max_runs: int = 500) -> Latency:
    """Median and p95 of repeated calls after a warm-up, within a time budget (at least `min_runs` calls)."""
    deadline = time.perf_counter() + warmup_s
    run(batch)
    for _ in range(WARMUP_CALLS - 1):
        if time.perf_counter() >= deadline:
            break
        run(batch)
    times: list[float] = []
    meter = Meter()
    deadline = time.perf_counter() + budget_s
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() < deadline):
        start = time.perf_counter()
        run(batch)
        times.append((time.perf_counter() - start) * 1000.0)
    spent = meter.spent()
    return Latency(p50_ms=float(np.percentile(times, 50)), p95_ms=float(np.percentile(times, 95)),
                   batch_size=len(batch), threads=threads, runs=len(times), input_shape=as_arrays(batch)[0].shape,
                   cpu_s=spent.cpu_s, energy_j=spent.energy_j)


def paired_latency(rounds: list[Latency], clock: list[Latency]) -> Latency:
    """One figure from interleaved timing rounds of a model, drift-corrected by a reference model timed in the
    same rounds: the median of the per-round ratios to the reference, times the reference's median."""
    ratio = float(np.median([r.p50_ms / c.p50_ms for r, c in zip(rounds, clock, strict=True)]))
    return Latency(p50_ms=ratio * float(np.median([c.p50_ms for c in clock])),
                   p95_ms=float(np.median([r.p95_ms for r in rounds])), batch_size=rounds[0].batch_size,
                   threads=rounds[0].threads, runs=sum(r.runs for r in rounds), input_shape=rounds[0].input_shape,
                   cpu_s=_total([r.cpu_s for r in rounds]), energy_j=_total([r.energy_j for r in rounds]),
                   rounds=len(rounds))


def _total(parts: list[float | None]) -> float | None:
    """A sum over timing rounds; unknown where any round's part is."""
    return None if any(p is None for p in parts) else sum(p for p in parts if p is not None)


@dataclass(frozen=True)
class Size:
    bytes: int
    zstd_bytes: int


def artifact_size(model: ModelHandle) -> Size:
    """Bytes of the artifact file as saved, and zstd-compressed (what sparsity and sharing buy on the wire)."""
    with tempfile.TemporaryDirectory() as tmp:
        data = model.save(Path(tmp)).read_bytes()
    return Size(bytes=len(data), zstd_bytes=len(zstandard.ZstdCompressor(level=10).compress(data)))


@dataclass(frozen=True)
class _TorchLayer:
    name: str
    weight: torch.Tensor | None
    others: list[torch.Tensor]  # biases and any other parameters of the module itself
    bits: int


def _torch_layers(module: nn.Module) -> list[_TorchLayer]:
    """Each module's weights as they are used: torch.ao quantized weights dequantized, shared weights
    (cluster.weights) materialised with the bit-width of their codebook index."""
    layers = []
    for name, layer in module.named_modules():
        if "parametrizations" in name.split("."):
            continue  # a parametrized layer's internals: its layer below reports them
        weight = getattr(layer, "weight", None)
        if callable(weight) and not isinstance(weight, nn.Module):  # torch.ao quantized modules: weight()
            quantized = weight()
            bias = layer.bias()  # type: ignore[operator]
            layers.append(_TorchLayer(name, quantized.dequantize(), [bias] if bias is not None else [],
                                      quantized.element_size() * 8))
        elif parametrize.is_parametrized(layer, "weight"):
            codebook = cast(Any, layer).parametrizations.weight.original
            layers.append(_TorchLayer(name, cast(torch.Tensor, layer.weight).detach(),
                                      [p.detach() for p in layer.parameters(recurse=False)],
                                      max(1, math.ceil(math.log2(codebook.numel())))))
        else:
            params = dict(layer.named_parameters(recurse=False))
            plain = params.pop("weight", None)
            layers.append(_TorchLayer(name, plain.detach() if plain is not None else None,
                                      [p.detach() for p in params.values()],
                                      plain.element_size() * 8 if plain is not None else 0))
    return layers


def count_parameters(model: ModelHandle) -> tuple[int, int]:
    """(parameters, non-zero parameters); for ONNX, the elements of its weight initializers."""
    if model.module is not None:
        arrays = [t for layer in _torch_layers(model.module) for t in (layer.weight, *layer.others) if t is not None]
        return sum(a.numel() for a in arrays), sum(int(torch.count_nonzero(a)) for a in arrays)
    graph = model.onnx_model().graph
    packed = _packed_weights(graph)
    initializers = [numpy_helper.to_array(t) for t in graph.initializer if len(t.dims) >= 1 and t.name not in packed]
    unpacked = sum(n * k for n, k, _ in packed.values())  # zeros inside packed blocks are not counted
    return (sum(a.size for a in initializers) + unpacked,
            sum(int(np.count_nonzero(a)) for a in initializers) + unpacked)


def _packed_weights(graph: onnx.GraphProto) -> dict[str, tuple[int, int, int]]:
    """Weights that MatMulNBits packs several to a byte: initializer name -> (N, K, bits)."""
    packed = {}
    for node in graph.node:
        if node.op_type == "MatMulNBits":
            attrs = {a.name: a.i for a in node.attribute}
            packed[node.input[1]] = (attrs["N"], attrs["K"], attrs["bits"])
    return packed


@dataclass(frozen=True)
class LayerStats:
    name: str
    shape: tuple[int, ...]
    bits: int
    sparsity: float


def _onnx_bits(data_type: int) -> int:
    if data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
        return 4
    return int(onnx.helper.tensor_dtype_to_np_dtype(data_type).itemsize * 8)


def layer_stats(model: ModelHandle) -> list[LayerStats]:
    """Bit-width and fraction of stored zeros of each weight matrix, as the artifact holds it."""
    if model.module is not None:
        return [LayerStats(layer.name, tuple(layer.weight.shape), layer.bits, float((layer.weight == 0).float().mean()))
                for layer in _torch_layers(model.module) if layer.weight is not None and layer.weight.dim() >= 2]
    graph = model.onnx_model().graph
    packed = _packed_weights(graph)
    block_params = {name for node in graph.node if node.op_type == "MatMulNBits" for name in node.input[2:]}
    return [LayerStats(init.name, (packed[init.name][0], packed[init.name][1]), packed[init.name][2], 0.0)
            if init.name in packed else
            LayerStats(init.name, tuple(init.dims), _onnx_bits(init.data_type),
                       float(np.mean(numpy_helper.to_array(init) == 0)))
            for init in graph.initializer if len(init.dims) >= 2 and init.name not in block_params]


_MATMUL_OPS = {"MatMul", "Gemm", "MatMulInteger", "QLinearMatMul", "MatMulNBits"}
_CONV_OPS = {"Conv", "ConvInteger", "QLinearConv"}


def _onnx_macs(model: onnx.ModelProto, example: np.ndarray) -> int | None:
    """Multiply-accumulates of MatMul/Gemm/Conv nodes, from shapes inferred for the one-sample `example`.

    ONNX Runtime's symbolic shape inference, since onnx's own stops at com.microsoft operators (MatMulNBits).
    """
    del model.graph.value_info[:]  # stale symbolic shapes would shadow the concrete ones inferred below
    shapes_given = dict(zip([i.name for i in model.graph.input], [a.shape for a in as_arrays(example)], strict=False))
    for graph_input in model.graph.input:
        for dim, size in zip(graph_input.type.tensor_type.shape.dim, shapes_given.get(graph_input.name, ()),
                             strict=False):
            dim.ClearField("dim_param")
            dim.dim_value = size
    with scratch_directory():
        inferred = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    shapes: dict[str, list[int]] = {}
    for info in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
        shapes[info.name] = [d.dim_value for d in info.type.tensor_type.shape.dim]
    for init in inferred.graph.initializer:
        shapes[init.name] = list(init.dims)
    macs = 0
    for node in inferred.graph.node:
        if node.op_type not in _MATMUL_OPS | _CONV_OPS:
            continue
        out = shapes.get(node.output[0])
        if not out or 0 in out:
            return None  # a layer whose shape is unknown: an undercount would look like a saving
        if node.op_type == "MatMulNBits":
            macs += int(np.prod(out)) * next(a.i for a in node.attribute if a.name == "K")
        elif node.op_type in _MATMUL_OPS:
            a = shapes.get(node.input[0], [])
            transposed = any(at.name == "transA" and at.i == 1 for at in node.attribute)
            if a:
                macs += int(np.prod(out)) * (a[0] if transposed and len(a) == 2 else a[-1])
        else:
            weight_index = 3 if node.op_type == "QLinearConv" else 1
            w = shapes.get(node.input[weight_index], [])
            if w:
                macs += int(np.prod(out)) * int(np.prod(w[1:]))
    return macs


def count_macs(model: ModelHandle, example: np.ndarray) -> int | None:
    """MACs for the one-sample batch `example`; None where the graph's shapes cannot be followed."""
    if model.onnx_bytes is not None:
        try:
            return _onnx_macs(model.onnx_model(), example)
        except Exception:  # shape inference fails on some custom-domain graphs: report unknown, not zero
            return None
    module = model.module
    quantized = any(hasattr(m, "_packed_params") for m in module.modules())  # type: ignore[union-attr]
    if quantized:
        return None
    # no_grad, not inference_mode: under the counter, inference_mode breaks parametrized (shared) weights
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(*as_tensors(example))  # type: ignore[misc]
    return counter.get_total_flops() // 2


def rss_bytes() -> int:
    """Resident memory of this process now (Linux /proc)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def peak_memory() -> Iterator[list[int | None]]:
    """Yield a one-item list that ends up holding the peak resident memory above the start, in bytes.

    Sampled from /proc every millisecond, since native runtimes allocate outside Python's tracemalloc;
    None where /proc is unavailable.
    """
    result: list[int | None] = [None]
    if not os.path.exists("/proc/self/statm"):
        yield result
        return
    start = rss_bytes()
    peak = [start]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            done.wait(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield result
    finally:
        done.set()
        sampler.join()
        result[0] = max(peak[0], rss_bytes()) - start
