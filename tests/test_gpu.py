"""GPU paths: fine-tuning moves to a CUDA GPU when torch sees one (the model comes back on the CPU, where the
artifacts are), and `runtime: auto` times torch models on the GPU too. Most tests run only where a GPU is present
(CI has none); the last checks what a machine without one says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tradeoff.config import TrainSpec
from tradeoff.data import DataBundle
from tradeoff.errors import RuntimeBackendError
from tradeoff.evaluation import Evaluator
from tradeoff.metrics import get_metric
from tradeoff.model import ModelHandle
from tradeoff.passes import Context, build_pass
from tradeoff.runtimes import runtime_for
from tradeoff.runtimes.torch_eager import TorchCuda, TorchEager
from tradeoff.training import Trainer

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


@gpu
def test_fine_tuning_trains_on_the_gpu_and_hands_the_model_back_on_the_cpu(mlp: ModelHandle,
                                                                            digits: DataBundle) -> None:
    torch.cuda.reset_peak_memory_stats()
    step = {"pass": "prune.magnitude", "sparsity": 0.9, "finetune_epochs": 3}
    pruned = build_pass(step).apply(mlp, Context(data=digits, threads=2))
    assert torch.cuda.max_memory_allocated() > 0
    assert {p.device.type for p in pruned.module.parameters()} == {"cpu"}  # type: ignore[union-attr]
    untuned = build_pass({**step, "finetune_epochs": 0}).apply(mlp, Context(data=digits, threads=2))
    evaluator = Evaluator(mlp, digits, get_metric("accuracy"), 2, (1,))
    assert evaluator.score(pruned, "test") > evaluator.score(untuned, "test")


@gpu
def test_a_failed_training_step_still_hands_the_model_back_on_the_cpu(mlp: ModelHandle, digits: DataBundle) -> None:
    module = build_pass({"pass": "prune.magnitude", "finetune_epochs": 0}).apply(
        mlp, Context(data=digits)).module
    assert module is not None

    def broken_step() -> None:
        raise RuntimeError("a pass's step failed")

    with pytest.raises(RuntimeError, match="step failed"):
        Trainer(TrainSpec(epochs=1)).fit(module, digits.train, digits.val, after_step=broken_step)
    assert {p.device.type for p in module.parameters()} == {"cpu"}


@gpu
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_on_the_gpu_trains_like_fp32(mlp: ModelHandle, digits: DataBundle, precision: str) -> None:
    """fp16 runs through the gradient scaler (its state is in the resume file); both reach fp32's accuracy."""
    scores = {}
    for mode in ("fp32", precision):
        module = mlp.torch_module()
        torch.nn.init.normal_(module.layers[-1].weight, std=0.01)  # type: ignore[index, union-attr]
        Trainer(TrainSpec(epochs=3, lr=3e-3, precision=mode)).fit(module, digits.train, digits.val)
        assert {p.device.type for p in module.parameters()} == {"cpu"}
        with torch.inference_mode():
            scores[mode] = float((module(torch.from_numpy(digits.test.x)).argmax(1).numpy() == digits.test.y).mean())
    assert scores[precision] > scores["fp32"] - 0.02


@gpu
def test_torch_models_run_on_the_gpu_like_on_the_cpu_and_auto_times_both(mlp: ModelHandle,
                                                                          digits: DataBundle) -> None:
    batch = digits.val.x[:32]
    np.testing.assert_allclose(TorchCuda().load(mlp, 2)(batch), TorchEager().load(mlp, 2)(batch), atol=1e-4)
    assert {p.device.type for p in mlp.module.parameters()} == {"cpu"}  # type: ignore[union-attr]
    evaluator = Evaluator(mlp, digits, get_metric("accuracy"), 1, (1,))  # one thread: the runtimes alone
    chosen, table = evaluator.with_fastest_runtime(mlp, "val")
    assert set(table) == {"torch", "torch.cuda"} and chosen.runtime == min(table, key=table.__getitem__)
    int8 = build_pass({"pass": "quantize.dynamic"}).apply(mlp, Context(data=digits))  # torch.ao: CPU kernels only
    with pytest.raises(RuntimeBackendError, match="CPU only"):
        TorchCuda().load(int8, 2)
    assert set(evaluator.with_fastest_runtime(int8, "val")[1]) == {"torch"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without a GPU")
def test_an_artifact_tuned_on_a_gpu_says_what_it_needs_on_a_machine_without_one(mlp: ModelHandle) -> None:
    with pytest.raises(RuntimeBackendError, match="needs a CUDA GPU"):
        runtime_for(mlp.with_runtime("torch.cuda"))
