"""fuse.transformer: ONNX Runtime's transformer graph optimizer on an exported encoder.

It rewrites each layer's attention subgraph into one Attention operator and fuses the embeddings, LayerNorms,
residual adds and GELUs, which both speeds up FP32 and lets int8 quantize attention as a whole (QAttention).
"""

from __future__ import annotations

import contextlib
import io
import logging
from typing import Literal, get_args

import onnx
from onnxruntime.transformers.optimizer import optimize_model

from tradeoff.errors import ModelError
from tradeoff.huggingface import keep_transformer_facts, transformer_facts
from tradeoff.model import ModelHandle
from tradeoff.passes.base import Context, Pass, PassConfig, register
from tradeoff.scratch import scratch_directory

OptimizerFamily = Literal["bert", "bart", "gpt2", "t5", "phi", "vit", "clip", "unet"]


class TransformerFusionConfig(PassConfig):
    model_type: Literal["auto"] | OptimizerFamily = "auto"
    gelu_approximation: bool = False  # tanh GELU: faster, not bit-faithful


def has_ort_fused_operators(graph: onnx.ModelProto) -> bool:
    """Whether the graph holds ONNX Runtime's own operators (what this pass writes), which other tools
    (symbolic shape inference, NNCF) cannot read."""
    return any(node.domain == "com.microsoft" for node in graph.graph.node)


def _optimizer_family(model_type: str) -> str:
    """BERT-like encoders (BERT, MiniLM, RoBERTa, DistilBERT, ELECTRA ...) all use the 'bert' fusions."""
    return model_type if model_type in get_args(OptimizerFamily) else "bert"


@register
class TransformerFusion(Pass[TransformerFusionConfig]):
    name = "fuse.transformer"
    stage = "graph"
    tags = frozenset({"speed", "lossless"})
    accepts = frozenset({"onnx"})
    provides = frozenset({"ort_fused"})
    requires = frozenset({"transformer"})

    def transform(self, model: ModelHandle, ctx: Context) -> ModelHandle:
        config = self.config
        graph = model.onnx_model()
        facts = transformer_facts(graph)
        if "num_heads" not in facts:
            raise ModelError("fuse.transformer needs a transformer exported by export.onnx from a Hugging Face "
                             "model (the graph does not say its number of heads)",
                             "load the model with model.source: huggingface, then export.onnx before this pass")
        family = config.model_type if config.model_type != "auto" else _optimizer_family(facts.get("model_type", ""))
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), scratch_directory():
            logger = logging.getLogger("onnxruntime.transformers")
            level, logger.level = logger.level, logging.ERROR
            try:
                optimized = optimize_model(graph, model_type=family, num_heads=int(facts["num_heads"]),
                                           hidden_size=int(facts["hidden_size"]))
                if config.gelu_approximation:
                    optimized.gelu_approximation()
            finally:
                logger.setLevel(level)
        fused = optimized.get_fused_operator_statistics()
        if not fused.get("Attention") and not fused.get("MultiHeadAttention"):
            raise ModelError(f"fuse.transformer fused no attention in this {facts.get('model_type')} graph",
                             "export with eager attention (export.onnx does this for Hugging Face models)")
        keep_transformer_facts(graph, optimized.model)
        return model.with_onnx(optimized.model)
