"""quantize.nncf: static int8 by OpenVINO's NNCF, the post-training quantizer built for OpenVINO's int8 kernels.

For transformers it applies SmoothQuant (moving activation outliers into the weights) and keeps the operators
int8 would hurt most in float, the reason plain static int8 of an encoder collapses (mean cosine 0.82 on MiniLM
with ONNX Runtime's QDQ) and this one holds (0.997). The result is a QDQ ONNX graph with int8 weights; OpenVINO
runs it fastest, ONNX Runtime runs it too, and `runtime: auto` measures both.

With `max_drop` set it uses NNCF's accuracy control instead: operators are ranked by how much their int8 costs the
task's metric on a holdout of the training split (never validation: the search decides there), and the most
sensitive go back to float until the metric is within `max_drop` of the original's or the iterations run out.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
from collections.abc import Callable, Iterable
from typing import Any, Literal

import numpy as np
import onnx
from pydantic import Field

from tradeoff.data import Split
from tradeoff.errors import ModelError
from tradeoff.evaluation import predict
from tradeoff.huggingface import is_transformer, keep_transformer_facts
from tradeoff.inputs import as_feeds
from tradeoff.metrics import row_cosines
from tradeoff.model import ModelHandle
from tradeoff.passes.base import Context, Pass, PassConfig, register
from tradeoff.passes.fuse_transformer import has_ort_fused_operators
from tradeoff.runtimes.base import InferenceFn
from tradeoff.runtimes.onnxruntime import OnnxRuntime


class NncfConfig(PassConfig):
    preset: Literal["performance", "mixed"] = "mixed"  # mixed: asymmetric activations, for GELU/softmax ranges
    model_type: Literal["auto", "transformer", "other"] = "auto"
    fast_bias_correction: bool = True
    subset_size: int = Field(default=300, ge=1)
    max_drop: float | None = Field(default=None, ge=0.0)  # keep the most sensitive operators in float to hold this
    ranking_texts: int = Field(default=50, ge=1)  # holdout samples that rank operators' sensitivity (cost grows)
    max_iterations: int = Field(default=3, ge=1)  # rounds of putting operators back to float


@register
class NncfQuantization(Pass[NncfConfig]):
    name = "quantize.nncf"
    stage = "quantize"
    tags = frozenset({"speed", "size"})
    accepts = frozenset({"onnx"})
    refuses = frozenset({"ort_fused"})  # fused operators are ONNX Runtime's own

    @classmethod
    def available(cls) -> bool:
        return importlib.util.find_spec("nncf") is not None

    def transform(self, model: ModelHandle, ctx: Context) -> ModelHandle:
        config = self.config
        if not self.available():
            raise ModelError("quantize.nncf needs the nncf package", "pip install 'tradeoff[openvino]'")
        graph = model.onnx_model()
        if has_ort_fused_operators(graph):
            raise ModelError("quantize.nncf cannot read ONNX Runtime's fused operators",
                             "put it right after export.onnx, without fuse.transformer")
        import nncf

        samples = ctx.data.calibration()
        names = [i.name for i in graph.graph.input]
        transformer = config.model_type == "transformer" or (config.model_type == "auto" and is_transformer(model))
        nncf.set_log_level(logging.ERROR)
        options = {"preset": nncf.QuantizationPreset.MIXED if config.preset == "mixed"
                   else nncf.QuantizationPreset.PERFORMANCE,
                   "model_type": nncf.ModelType.TRANSFORMER if transformer else None,
                   "fast_bias_correction": config.fast_bias_correction,
                   "subset_size": min(config.subset_size, len(samples))}
        calibration = nncf.Dataset([as_feeds(samples[i : i + 1], names) for i in range(len(samples))])
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            if config.max_drop is None:
                quantized = nncf.quantize(graph, calibration, **options)
            else:
                holdout, validate = _holdout_check(ctx)
                restorer = nncf.AdvancedAccuracyRestorerParameters(
                    ranking_subset_size=min(config.ranking_texts, len(holdout)),
                    max_num_iterations=config.max_iterations)
                quantized = nncf.quantize_with_accuracy_control(
                    graph, calibration, nncf.Dataset(list(range(len(holdout)))), validate, max_drop=config.max_drop,
                    advanced_accuracy_restorer_parameters=restorer, **options)
        keep_transformer_facts(graph, quantized)
        return model.with_onnx(quantized)


def _holdout_check(ctx: Context) -> tuple[Split, Callable[[onnx.ModelProto, Iterable[int]], Any]]:
    """The training holdout and NNCF's validation function over it: the task's metric (made higher-is-better) of an
    ONNX graph on the holdout rows NNCF names, and per row the cosine to the original's output, which NNCF ranks
    operators by (set metrics such as Spearman or F1 have no per-row value)."""
    if ctx.metric is None:
        raise ModelError("quantize.nncf with max_drop needs the task's metric", "pass Context(metric=...)")
    metric = ctx.metric
    holdout = ctx.data.train_holdout()[1]
    reference = ctx.trainer.teacher_outputs(ctx, holdout, "quantize.nncf with max_drop")
    loaded: dict[int, InferenceFn] = {}  # NNCF asks about one graph many times, one row at a time

    def validate(graph: onnx.ModelProto, rows: Iterable[int]) -> tuple[float, list[float]]:
        if id(graph) not in loaded:
            loaded.clear()
            loaded[id(graph)] = OnnxRuntime().load(ModelHandle(onnx_bytes=graph.SerializeToString()), ctx.threads)
        index = np.fromiter(rows, dtype=np.int64)
        outputs = predict(loaded[id(graph)], holdout.take(index))
        sign = 1.0 if metric.higher_is_better else -1.0
        score = sign * metric(outputs, holdout.y[index], reference[index])
        return score, row_cosines(outputs, reference[index]).tolist()

    return holdout, validate
