"""quantize.embedding: token embedding tables in 4 bits, one scale per block of each row.

A BERT-sized vocabulary table is half of an int8 encoder's file (30,522 x 384 on MiniLM), and 4-bit rows with
one scale per 32 values cost all-MiniLM-L6-v2 about 0.001 mean cosine, against 5 MB saved. Only tables gathered
by a graph input (token ids) are touched: position tables gathered by computed indices are more sensitive (4-bit
positions cost MiniLM 0.007) and small.

Written by hand rather than through ONNX Runtime's MatMulNBitsQuantizer, which makes the same operator but forces
the whole graph to opset 21 for its int4 tensors, breaking exported graphs (ReduceL2's axes) and NNCF's QDQ
(QuantizeLinear's output type). GatherBlockQuantized also takes two 4-bit values packed per uint8, which needs no
opset change; ONNX Runtime and OpenVINO both run it, gathering rows before dequantizing them. The standard ONNX
form, an int4 DequantizeLinear before the Gather, made ONNX Runtime dequantize the whole table on every call
(18 ms per call here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnxruntime.quantization.onnx_model import ONNXModel

from tradeoff.distributions import Choice
from tradeoff.errors import ModelError
from tradeoff.model import ModelHandle
from tradeoff.passes.base import Context, Pass, PassConfig, register

LEVELS = 7  # symmetric int4: values -7..7 around the zero point 8 that the uint8 packing implies


class EmbeddingConfig(PassConfig):
    block_size: Literal[16, 32, 64, 128, 256] = 32  # values per scale, along a row; GatherBlockQuantized's sizes


@dataclass(frozen=True)
class EmbeddingTable:
    """A token table as float rows, and what reads it now: the Gather, and a DequantizeLinear that an int8 pass
    put before it (QDQ) or after it (ONNX Runtime's QOperator form), whose output the new node must produce."""

    gather: onnx.NodeProto
    values: np.ndarray
    dequantize: onnx.NodeProto | None
    output: str


def _dequantized(integers: str, node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> np.ndarray | None:
    """DequantizeLinear `node` applied in numpy to the constant `integers`; None when its scale is not constant."""
    if integers not in inits or not all(name in inits for name in node.input[1:] if name):
        return None
    values = numpy_helper.to_array(inits[integers]).astype(np.float32)
    scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
    zero = numpy_helper.to_array(inits[node.input[2]]).astype(np.float32) if len(node.input) > 2 and node.input[2] \
        else np.zeros_like(scale)
    if scale.size > 1:  # per-axis: the scales run along `axis`
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * values.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (values - zero) * scale


def token_tables(model: ONNXModel) -> list[EmbeddingTable]:
    """Every rank-2 constant table gathered along rows by a graph input, in float, whatever int8 form it is in."""
    graph = model.graph()
    inits = {t.name: t for t in graph.initializer}
    producers, consumers = model.output_name_to_node(), model.input_name_to_nodes()
    graph_inputs = {i.name for i in graph.input}
    tables = []
    for gather in graph.node:
        if gather.op_type != "Gather" or gather.input[1] not in graph_inputs \
                or any(a.name == "axis" and a.i != 0 for a in gather.attribute):
            continue
        table, source, after = gather.input[0], producers.get(gather.input[0]), consumers.get(gather.output[0], [])
        if table in inits and len(after) == 1 and after[0].op_type == "DequantizeLinear":  # QOperator
            values, dequantize, output = _dequantized(table, after[0], inits), after[0], after[0].output[0]
        elif table in inits:
            values, dequantize, output = numpy_helper.to_array(inits[table]), None, gather.output[0]
        elif source is not None and source.op_type == "DequantizeLinear" and len(consumers[table]) == 1:  # QDQ
            values, dequantize, output = _dequantized(source.input[0], source, inits), source, gather.output[0]
        else:
            continue
        if values is not None and values.ndim == 2 and np.issubdtype(values.dtype, np.floating):
            tables.append(EmbeddingTable(gather, values.astype(np.float32), dequantize, output))
    return tables


def pack_int4(values: np.ndarray, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows quantized symmetrically per block, two values per byte (low nibble first), and the block scales."""
    rows, width = values.shape
    blocks = values.reshape(rows, width // block_size, block_size)
    scales = np.abs(blocks).max(axis=-1) / LEVELS
    scales[scales == 0] = 1.0
    levels = np.clip(np.rint(blocks / scales[..., None]), -LEVELS, LEVELS).astype(np.int16) + 8
    nibbles = levels.astype(np.uint8).reshape(rows, width)
    return nibbles[:, 0::2] | (nibbles[:, 1::2] << 4), scales.astype(np.float32)


@register
class EmbeddingQuantization(Pass[EmbeddingConfig]):
    name = "quantize.embedding"
    stage = "embedding"
    tags = frozenset({"size", "low-bit"})
    accepts = frozenset({"onnx"})
    requires = frozenset({"transformer"})
    refuses = frozenset({"ort_fused"})  # fusion folds the token table's Gather into EmbedLayerNormalization
    space = {"block_size": Choice((32, 64))}

    def transform(self, model: ModelHandle, ctx: Context) -> ModelHandle:
        block_size = self.config.block_size
        onnx_model = ONNXModel(model.onnx_model())
        graph = onnx_model.graph()
        tables = [t for t in token_tables(onnx_model) if t.values.shape[1] % block_size == 0]
        if not tables:
            raise ModelError(f"quantize.embedding found no token embedding table (a Gather of a graph input) whose "
                             f"rows divide into blocks of {block_size}",
                             "use it on exported transformers, before fuse.transformer folds the embeddings away, "
                             "or choose a block_size that divides the embedding width")
        for table in tables:
            packed, scales = pack_int4(table.values, block_size)
            stem = table.gather.input[0]
            graph.initializer.extend([numpy_helper.from_array(packed, f"{stem}_int4"),
                                      numpy_helper.from_array(scales, f"{stem}_int4_scales")])
            node = helper.make_node("GatherBlockQuantized", [f"{stem}_int4", table.gather.input[1],
                                                             f"{stem}_int4_scales"],
                                    [table.output], name=f"{table.gather.name or stem}_int4", domain="com.microsoft",
                                    gather_axis=0, quantize_axis=1, block_size=block_size)
            position = list(graph.node).index(table.gather)
            graph.node.remove(table.gather)
            if table.dequantize is not None:
                graph.node.remove(table.dequantize)
            graph.node.insert(min(position, len(graph.node)), node)
        onnx_model.set_opset_import("com.microsoft", 1)
        onnx_model.remove_unused_constant()  # the int8 or float table and its scales
        return model.with_onnx(onnx_model.model)
