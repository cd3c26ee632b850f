"""cluster.weights: at most 2^bits distinct values per layer, stored as indices + codebook, accuracy kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tradeoff.artifact import load_artifact
from tradeoff.errors import ModelError
from tradeoff.evaluation import Evaluator
from tradeoff.measure import artifact_size
from tradeoff.metrics import get_metric
from tradeoff.model import ModelHandle
from tradeoff.passes import Context, build_pass
from tradeoff.recipe import Recipe
from tradeoff.runtimes import runtime_for


def _layer_weights(model: ModelHandle) -> list[torch.Tensor]:
    return [layer.weight.detach() for layer in model.module.layers if hasattr(layer, "weight")]


@pytest.mark.parametrize("bits", [2, 4])
def test_each_layer_shares_at_most_two_to_the_bits_values(bits: int, mlp: ModelHandle, ctx: Context) -> None:
    clustered = build_pass({"pass": "cluster.weights", "bits": bits, "finetune_epochs": 1}).apply(mlp, ctx)
    assert all(len(torch.unique(w)) <= 2**bits for w in _layer_weights(clustered))


def test_four_bit_sharing_keeps_accuracy_and_shrinks_the_artifact(mlp: ModelHandle, ctx: Context) -> None:
    clustered = build_pass({"pass": "cluster.weights", "bits": 4}).apply(mlp, ctx)
    evaluator = Evaluator(mlp, ctx.data, get_metric("accuracy"), 2, (1,))
    assert evaluator.score(mlp, "test") - evaluator.score(clustered, "test") <= 0.01
    dense, shared = artifact_size(mlp), artifact_size(clustered)
    assert dense.bytes / shared.bytes >= 3.5  # uint8 indices instead of float32 weights
    assert dense.zstd_bytes / shared.zstd_bytes >= 5.0  # 16 distinct indices compress further


def test_fine_tuning_moves_the_centroids_and_pins_pruned_zeros(mlp: ModelHandle, ctx: Context) -> None:
    pruned = build_pass({"pass": "prune.magnitude", "sparsity": 0.8, "finetune_epochs": 0}).apply(mlp, ctx)
    frozen = build_pass({"pass": "cluster.weights", "finetune_epochs": 0}).apply(pruned, ctx)
    tuned = build_pass({"pass": "cluster.weights", "finetune_epochs": 2}).apply(pruned, ctx)
    for before, after, original in zip(_layer_weights(frozen), _layer_weights(tuned), _layer_weights(pruned),
                                       strict=True):
        assert not torch.equal(before, after)
        assert torch.equal(after[original == 0], torch.zeros_like(after[original == 0]))


def test_artifact_reloads_and_exports(mlp: ModelHandle, ctx: Context, tmp_path: Path) -> None:
    clustered = build_pass({"pass": "cluster.weights", "bits": 3, "finetune_epochs": 1}).apply(mlp, ctx)
    clustered.save(tmp_path)
    reloaded = load_artifact(tmp_path)
    batch = ctx.data.test.x[:32]
    expected = runtime_for(clustered).load(clustered, 2)(batch)
    np.testing.assert_array_equal(runtime_for(reloaded).load(reloaded, 2)(batch), expected)
    exported = Recipe(steps=({"pass": "export.onnx"},)).apply(clustered, ctx)
    np.testing.assert_allclose(runtime_for(exported).load(exported, 2)(batch), expected, atol=1e-4)


def test_clustering_twice_is_refused(mlp: ModelHandle, ctx: Context) -> None:
    once = build_pass({"pass": "cluster.weights", "finetune_epochs": 0}).apply(mlp, ctx)
    with pytest.raises(ModelError, match="already shared"):
        build_pass({"pass": "cluster.weights"}).apply(once, ctx)


def test_shared_weights_quantize_to_int8_in_torch_and_reload(mlp: ModelHandle, ctx: Context, tmp_path: Path) -> None:
    both = Recipe(steps=({"pass": "cluster.weights", "finetune_epochs": 0}, {"pass": "quantize.dynamic"})).apply(
        mlp, ctx)
    both.save(tmp_path)
    reloaded = load_artifact(tmp_path)
    batch = ctx.data.test.x[:16]
    expected = runtime_for(both).load(both, 2)(batch)
    np.testing.assert_array_equal(runtime_for(reloaded).load(reloaded, 2)(batch), expected)


def test_quantizing_a_copy_leaves_the_shared_original_usable(mlp: ModelHandle, ctx: Context) -> None:
    clustered = build_pass({"pass": "cluster.weights", "finetune_epochs": 0}).apply(mlp, ctx)
    build_pass({"pass": "quantize.dynamic"}).apply(clustered, ctx)
    exported = build_pass({"pass": "export.onnx"}).apply(clustered, ctx)
    assert exported.format == "onnx"


def test_measurements_see_shared_weights_as_weights_with_their_index_bits(mlp: ModelHandle, ctx: Context) -> None:
    from tradeoff.measure import count_macs, count_parameters, layer_stats

    clustered = build_pass({"pass": "cluster.weights", "bits": 4, "finetune_epochs": 0}).apply(mlp, ctx)
    assert count_parameters(clustered)[0] == count_parameters(mlp)[0]
    assert count_macs(clustered, np.zeros((1, 64), np.float32)) == count_macs(mlp, np.zeros((1, 64), np.float32))
    assert [layer.bits for layer in layer_stats(clustered)] == [4, 4, 4]


def test_the_torch_runtime_decodes_shared_weights_once_not_per_call(mlp: ModelHandle, ctx: Context) -> None:
    clustered = build_pass({"pass": "cluster.weights", "finetune_epochs": 0}).apply(mlp, ctx)
    decodes = []
    clustered.module.layers[0].parametrizations.weight.register_forward_hook(lambda *_: decodes.append(1))
    run = runtime_for(clustered).load(clustered, 1)
    for _ in range(5):
        run(ctx.data.test.x[:4])
    assert len(decodes) == 1
    np.testing.assert_allclose(run(ctx.data.test.x[:4]), clustered.module(torch.from_numpy(ctx.data.test.x[:4]))
                               .detach().numpy(), atol=1e-6)
