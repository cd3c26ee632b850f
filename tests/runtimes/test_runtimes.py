"""Runtimes beyond the defaults: torch.compile, and what a pinned runtime refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tradeoff.artifact import load_artifact
from tradeoff.data import DataBundle
from tradeoff.errors import ConfigError, RuntimeBackendError
from tradeoff.evaluation import FEWER_THREADS_GAIN, Evaluator
from tradeoff.metrics import get_metric
from tradeoff.model import ModelHandle
from tradeoff.passes import Context, build_pass
from tradeoff.recipe import Recipe
from tradeoff.runtimes import runtime_for, runtimes_for
from tradeoff.search.space import default_space, select_passes


def test_torch_compile_runs_the_model_like_eager(mlp: ModelHandle, digits: DataBundle) -> None:
    batch = digits.test.x[:32]
    compiled = runtime_for(mlp.with_runtime("torch.compile")).load(mlp, 2)
    np.testing.assert_allclose(compiled(batch), runtime_for(mlp).load(mlp, 2)(batch), atol=1e-5)
    assert "torch.compile" not in runtimes_for("torch", auto_only=True)  # compiling every candidate is too slow


def test_a_torch_artifact_remembers_its_runtime(mlp: ModelHandle, tmp_path: Path) -> None:
    mlp.with_runtime("torch.compile").save(tmp_path)
    assert load_artifact(tmp_path).runtime == "torch.compile"


def test_a_torch_compile_target_searches_torch_side_passes_only() -> None:
    menu = select_passes(None, ("speed", "size", "export"), ("retrains", "low-bit", "opt-in"))  # accuracy-critical
    space = default_space(menu, "torch.compile", frozenset({"torch"}))
    assert space.passes == {"quantize.dynamic"}


def test_a_runtime_that_cannot_run_the_format_or_is_unknown_is_refused(mlp: ModelHandle,
                                                                       digits: DataBundle) -> None:
    with pytest.raises(RuntimeBackendError, match="cannot run a torch model"):
        runtime_for(mlp.with_runtime("openvino"))
    with pytest.raises(ConfigError, match="unknown runtime 'tensorrt'"):
        Recipe.from_dict({"steps": [{"pass": "export.onnx"}], "runtime": "tensorrt"})
    replayed = Recipe.from_dict({"steps": [{"pass": "export.onnx"}], "runtime": "openvino"}).apply(
        mlp, Context(data=digits))
    assert replayed.runtime == "openvino" and runtime_for(replayed).name == "openvino"


def test_the_threads_are_chosen_by_measurement_and_the_artifact_and_recipe_keep_them(
        mlp: ModelHandle, digits: DataBundle, tmp_path: Path) -> None:
    """The task's threads are the most a model may use: the runtime is timed on half as many too, and the fewer
    are kept where they ran clearly faster (one ONNX Runtime thread runs a small MLP faster than two: NOTES)."""
    exported = build_pass({"pass": "export.onnx"}).apply(mlp, Context(data=digits))
    evaluator = Evaluator(mlp, digits, get_metric("accuracy"), 2, (1, 32), target="onnxruntime",
                          runtime_batches=(1, 32))
    chosen, table = evaluator.with_fastest_runtime(exported, "val")
    assert set(table) == {"onnxruntime", "onnxruntime on 1 thread"}
    one_faster = table["onnxruntime on 1 thread"] <= (1 - FEWER_THREADS_GAIN) * table["onnxruntime"]
    assert (chosen.runtime, chosen.threads) == ("onnxruntime", 1 if one_faster else None)
    assert {timed.threads for timed in evaluator.latency(chosen, "val").values()} == {1 if one_faster else 2}
    chosen.save(tmp_path)
    assert load_artifact(tmp_path).threads == chosen.threads
    replayed = Recipe.from_dict({"steps": [{"pass": "export.onnx"}], "runtime": "onnxruntime", "threads": 1}).apply(
        mlp, Context(data=digits))
    assert (replayed.threads_within(2), replayed.threads_within(1), exported.threads_within(4)) == (1, 1, 4)
    assert replayed.with_runtime("onnxruntime", 8).threads_within(2) == 2  # never more than the task allows
    with pytest.raises(ConfigError, match="threads"):
        Recipe.from_dict({"steps": [], "threads": 0})


def test_exported_mlp_runs_the_same_on_openvino(mlp: ModelHandle, digits: DataBundle) -> None:
    exported = build_pass({"pass": "export.onnx"}).apply(mlp, Context(data=digits))
    batch = digits.test.x[:16]
    np.testing.assert_allclose(runtime_for(exported.with_runtime("openvino")).load(exported, 2)(batch),
                               runtime_for(exported).load(exported, 2)(batch), atol=1e-4)


def test_onnx_runtime_asks_for_gpu_providers_first_and_caches_tensorrt_engines() -> None:
    from tradeoff.runtimes.onnxruntime import TENSORRT_CACHE, providers

    gpu_build = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert providers(gpu_build) == [("TensorrtExecutionProvider", {"trt_engine_cache_enable": "True",
                                                                   "trt_engine_cache_path": str(TENSORRT_CACHE)}),
                                    "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert providers(["CPUExecutionProvider", "AzureExecutionProvider"]) == ["CPUExecutionProvider"]
    assert providers()[-1] == "CPUExecutionProvider"  # this machine's own build
