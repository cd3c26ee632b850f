"""Measurements and metrics: the figures a user will trust."""

from __future__ import annotations

import numpy as np
import pytest

from tradeoff.config import MetricSpec, task_from_dict
from tradeoff.errors import ConfigError
from tradeoff.evaluation import Evaluator
from tradeoff.measure import Latency, artifact_size, count_macs, count_parameters, measure_latency, paired_latency
from tradeoff.metrics import get_metric
from tradeoff.model import ModelHandle
from tradeoff.passes import Context, build_pass

MLP_MACS = 64 * 128 + 128 * 64 + 64 * 10
CNN_MACS = 8 * 8 * 8 * 9 + 8 * 4 * 4 * 10


def test_macs_match_the_architecture_in_torch_and_onnx(mlp: ModelHandle, cnn: ModelHandle, digits,
                                                        digits_images) -> None:
    assert count_macs(mlp, np.zeros((1, 64), np.float32)) == MLP_MACS
    assert count_macs(cnn, np.zeros((1, 1, 8, 8), np.float32)) == CNN_MACS
    exported = build_pass({"pass": "export.onnx"}).apply(cnn, Context(data=digits_images, threads=2))
    assert count_macs(exported, np.zeros((1, 1, 8, 8), np.float32)) == CNN_MACS


def test_mild_sparsity_shows_in_nonzeros_and_compressed_size_only(mlp: ModelHandle) -> None:
    module = mlp.torch_module()
    for parameter in module.parameters():  # 40% zeros: below the level where sparse storage pays
        parameter.data[parameter.abs() < parameter.abs().quantile(0.4)] = 0.0
    sparse = ModelHandle(module=module)
    params, nonzero = count_parameters(sparse)
    assert params == count_parameters(mlp)[0] and nonzero <= 0.65 * params
    dense_size, sparse_size = artifact_size(mlp), artifact_size(sparse)
    assert sparse_size.bytes == dense_size.bytes
    assert sparse_size.zstd_bytes < 0.9 * dense_size.zstd_bytes


def test_latency_percentiles_are_ordered_and_use_the_batch_size() -> None:
    latency = measure_latency(lambda batch: np.sort(batch), np.ones((8, 1000)), threads=1, budget_s=0.2)
    assert 0 < latency.p50_ms <= latency.p95_ms and latency.batch_size == 8 and latency.runs >= 20


def test_the_tasks_timing_budget_sets_how_long_each_model_is_timed(mlp: ModelHandle, digits) -> None:
    """runtime.timing_s: a short budget for a quick look times fewer calls (20 at the least), a long one more
    (batches of 8,192 rows, so a call takes long enough that neither budget hits the 500-call cap)."""
    def calls(timing_s: float) -> int:
        evaluator = Evaluator(mlp, digits, get_metric("accuracy"), 1, (8192,), timing_s=timing_s)
        return evaluator.latency(mlp, "val")[8192].runs

    assert 20 <= calls(0.02) < calls(0.4)
    with pytest.raises(ConfigError, match="runtime.timing_s"):
        task_from_dict({"name": "t", "model": {"source": "onnx", "path": "m.onnx"},
                        "data": {"source": "builtin", "name": "digits"}, "runtime": {"timing_s": 0}})


def test_baseline_is_perfectly_faithful_to_itself(mlp: ModelHandle, digits) -> None:
    evaluator = Evaluator(mlp, digits, get_metric("cosine"), 2, (1,))
    assert evaluator.score(mlp, "test") == pytest.approx(1.0)


def test_accuracy_and_f1_agree_with_sklearn(mlp: ModelHandle, digits) -> None:
    from sklearn.metrics import accuracy_score, f1_score

    outputs = mlp.module(__import__("torch").from_numpy(digits.test.x)).detach().numpy()
    predicted = outputs.argmax(axis=1)
    assert get_metric("accuracy")(outputs, digits.test.y, outputs) == accuracy_score(digits.test.y, predicted)
    assert get_metric("f1_macro")(outputs, digits.test.y, outputs) == pytest.approx(
        f1_score(digits.test.y, predicted, average="macro"))


def top_class_share(outputs: np.ndarray, targets: np.ndarray) -> float:
    return float(np.mean(outputs.argmax(axis=1) == targets.max()))


def mean_error(outputs: np.ndarray, targets: np.ndarray) -> float:
    return float(np.mean(outputs.argmax(axis=1) != targets))


mean_error.higher_is_better = False  # type: ignore[attr-defined]


def test_user_metric_by_import_path_needs_its_direction() -> None:
    with pytest.raises(ConfigError, match="higher_is_better"):
        get_metric("test_measure_and_metrics:top_class_share")
    declared = get_metric("test_measure_and_metrics:mean_error")  # the function says which way is better
    assert not declared.higher_is_better and declared.drop(0.1, 0.3) == pytest.approx(0.2)
    metric = get_metric(MetricSpec(name="test_measure_and_metrics:top_class_share", higher_is_better=True))
    outputs = np.eye(3)[[0, 2, 2]]
    assert metric(outputs, np.array([0, 1, 2]), outputs) == pytest.approx(2 / 3)
    assert metric.drop(0.9, 0.8) == pytest.approx(0.1)


def test_lower_is_better_metrics_count_an_increase_as_a_drop() -> None:
    mse = get_metric("mse")
    assert mse.drop(baseline=0.10, candidate=0.15) == pytest.approx(0.05)


@pytest.mark.parametrize("steps", [[{"pass": "quantize.dynamic"}], [{"pass": "quantize.static"}],
                                   [{"pass": "quantize.fp16"}]])
def test_quantized_onnx_graphs_keep_the_mac_count(steps, cnn: ModelHandle, digits_images) -> None:
    from tradeoff.recipe import Recipe

    ctx = Context(data=digits_images, threads=2)
    quantized = Recipe(steps=({"pass": "export.onnx"}, *steps)).apply(cnn, ctx)
    assert count_macs(quantized, np.zeros((1, 1, 8, 8), np.float32)) == CNN_MACS


def test_environment_names_int8_instructions_and_warns_without_them() -> None:
    from tradeoff.env import collect_env, int8_warning

    env = collect_env(threads=2)
    assert set(env["cpu"]["flags"]) >= {"avx2", "avx512_vnni", "amx_int8"}
    slow = {**env, "cpu": {**env["cpu"], "model": "old CPU", "fast_int8": False}}
    assert "old CPU" in int8_warning(slow) and "slower" in int8_warning(slow)
    fast = {**env, "cpu": {**env["cpu"], "fast_int8": True}}
    assert int8_warning(fast) is None


@pytest.mark.parametrize(("steps", "bits"), [((), 32), (({"pass": "quantize.dynamic"},), 8),
                                             (({"pass": "export.onnx"}, {"pass": "quantize.static"}), 8),
                                             (({"pass": "export.onnx"}, {"pass": "quantize.fp16"}), 16)])
def test_layer_table_reports_stored_bits_and_zeros(steps, bits: int, mlp: ModelHandle, digits) -> None:
    from tradeoff.measure import layer_stats
    from tradeoff.recipe import Recipe

    ctx = Context(data=digits, threads=2)
    pruned = Recipe(steps=({"pass": "prune.magnitude", "sparsity": 0.5, "scope": "layer", "finetune_epochs": 0},
                           *steps)).apply(mlp, ctx)
    layers = layer_stats(pruned)
    assert len(layers) == 3 and {layer.bits for layer in layers} == {bits}
    assert all(layer.sparsity >= 0.45 for layer in layers)  # the zeros survive quantization


def test_packed_four_bit_weights_count_as_full_layers(mlp: ModelHandle, digits) -> None:
    from tradeoff.measure import layer_stats
    from tradeoff.recipe import Recipe

    packed = Recipe(steps=({"pass": "export.onnx"}, {"pass": "quantize.weight_only", "bits": 4})).apply(
        mlp, Context(data=digits, threads=2))
    assert count_macs(packed, np.zeros((1, 64), np.float32)) == MLP_MACS
    assert count_parameters(packed)[0] >= count_parameters(mlp)[0] - 10 * 64  # all weights, plus scales
    assert [(layer.shape, layer.bits) for layer in layer_stats(packed)] == [((128, 64), 4), ((64, 128), 4),
                                                                            ((10, 64), 4)]


def test_interleaved_rounds_compare_models_round_by_round() -> None:
    """Speed-ups come from ratios within a round: drift that hits one round moves neither model's figure apart."""

    def rounds(*ms: float) -> list[Latency]:
        return [Latency(p50_ms=m, p95_ms=m * 1.2, batch_size=1, threads=2, runs=20) for m in ms]

    clock = rounds(10.0, 20.0, 20.0)  # the reference: the machine was busy in rounds 2 and 3
    twice_as_fast = rounds(5.0, 5.0, 10.0)  # its round 2 ran in a quiet moment the reference did not get
    paired = paired_latency(twice_as_fast, clock)
    assert 20.0 / paired.p50_ms == pytest.approx(2.0)  # not 4x, as the medians 20 and 5 would say
    assert paired_latency(clock, clock).p50_ms == pytest.approx(20.0) and paired.runs == 60
