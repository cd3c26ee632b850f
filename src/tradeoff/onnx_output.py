"""Which output of an ONNX graph from another tool holds the scores tradeoff measures, and the graph cut to it.

Converters write several outputs: skl2onnx's classifiers give the predicted label (int64) first and the class
probabilities second, by default wrapped in a ZipMap (a sequence of {class: probability} maps) that no metric
reads. Runtimes and passes read a graph's one output, so a loaded graph is rewritten once to have a single float
tensor output, the one `model.output` names or else the one whose meaning is clear, without the nodes that only
fed the others (a label branch may hold operators that OpenVINO or a quantizer cannot take).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import onnx
import onnx.utils

from tradeoff.errors import ModelError

SCORE_NAME = re.compile(r"prob|logit|score", re.IGNORECASE)  # what an output of class scores is called
FLOATS = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16)


@dataclass(frozen=True)
class GraphOutput:
    name: str
    kind: str  # its type, for messages: float, int64, ZipMap of float
    scores: str | None  # the float tensor it is or wraps; None when it holds labels or anything else

    def answers_to(self, name: str) -> bool:
        return name in (self.name, self.scores)


def _outputs(graph: onnx.GraphProto) -> list[GraphOutput]:
    producers = {name: node for node in graph.node for name in node.output}
    outputs = []
    for info in graph.output:
        producer = producers.get(info.name)
        if producer is not None and producer.op_type == "ZipMap" and producer.domain == "ai.onnx.ml":
            outputs.append(GraphOutput(info.name, "ZipMap of float", producer.input[0]))  # ZipMap reads floats
        elif info.type.HasField("tensor_type"):
            dtype = info.type.tensor_type.elem_type
            outputs.append(GraphOutput(info.name, onnx.TensorProto.DataType.Name(dtype).lower(),
                                       info.name if dtype in FLOATS else None))
        else:
            outputs.append(GraphOutput(info.name, str(info.type.WhichOneof("value")), None))
    return outputs


def _listing(outputs: list[GraphOutput]) -> str:
    return ", ".join(f"{o.name} ({o.kind})" for o in outputs)


def _choose(outputs: list[GraphOutput], named: str | None) -> str:
    if named is not None:
        found = next((o for o in outputs if o.answers_to(named)), None)
        if found is None:
            raise ModelError(f"model.output '{named}' is not an output of the model, whose outputs are "
                             f"{_listing(outputs)}", "set model.output to one of them")
        if found.scores is None:
            raise ModelError(f"model.output '{named}' holds {found.kind} values, not scores",
                             "name the output of class scores, logits or probabilities")
        return found.scores
    usable = [o.scores for o in outputs if o.scores is not None]
    if not usable:
        raise ModelError(f"no output of the model holds scores: {_listing(outputs)}",
                         "export the model with its class scores, logits or probabilities as an output")
    if len(usable) > 1:
        usable = [o.scores for o in outputs if o.scores is not None and SCORE_NAME.search(f"{o.name} {o.scores}")]
    if len(usable) == 1:
        return usable[0]
    raise ModelError(f"cannot tell which output of the model holds its scores: {_listing(outputs)}",
                     "set model.output to the one of class scores, logits or probabilities (a float tensor)")


def keep_scores_output(onnx_bytes: bytes, output: str | None = None) -> bytes:
    """The graph with one output, a float tensor of scores: `output` (a graph output, or the tensor a ZipMap
    output wraps) if given, else the only float output, else the only one named like scores/logits/probabilities.
    A graph that already has a single float output comes back unchanged, byte for byte."""
    model = onnx.load_from_string(onnx_bytes)
    graph = model.graph
    outputs = _outputs(graph)
    if len(outputs) == 1 and outputs[0].scores == outputs[0].name and output in (None, outputs[0].name):
        return onnx_bytes
    chosen = _choose(outputs, output)
    if chosen not in {info.name for info in (*graph.value_info, *graph.output)}:  # a ZipMap's input may be untyped
        graph.value_info.append(onnx.helper.make_tensor_value_info(chosen, onnx.TensorProto.FLOAT, [None, None]))
    kept = onnx.utils.Extractor(model).extract_model([info.name for info in graph.input], [chosen])
    kept.metadata_props.extend(model.metadata_props)
    return kept.SerializeToString()
