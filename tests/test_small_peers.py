"""quantize_cpu's peers are the int8 tools a user would pick instead of tradeoff, with their defaults
(benchmarks/small_peers.py): each must really be int8 and keep the float model's accuracy, or the benchmark's
reference would be a strawman. The reference at each batch size is the fastest peer within the constraint."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

from tradeoff.data import DataBundle
from tradeoff.evaluation import predict
from tradeoff.metrics import get_metric
from tradeoff.model import ModelHandle
from tradeoff.runtimes import runtime_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ sits beside src/, not on the test path
from benchmarks.small_peers import small_peers  # noqa: E402
from benchmarks.timing import mark_references  # noqa: E402

accuracy = get_metric("accuracy")


def test_the_peers_are_int8_and_keep_the_float_accuracy(mlp: ModelHandle, digits: DataBundle) -> None:
    peers = {peer.name: peer for peer in small_peers(mlp, digits)}
    assert set(peers) == {"ONNX Runtime quantize_dynamic", "ONNX Runtime quantize_static", "OpenVINO + NNCF int8"}
    dynamic = Counter(n.op_type for n in peers["ONNX Runtime quantize_dynamic"].graph.graph.node)
    static = Counter(n.op_type for n in peers["ONNX Runtime quantize_static"].graph.graph.node)
    openvino = Counter(op.get_type_name() for op in peers["OpenVINO + NNCF int8"].graph.get_ordered_ops())
    assert dynamic["MatMulInteger"] == 3 and dynamic["DynamicQuantizeLinear"] >= 1  # the three Linear layers
    assert static["QuantizeLinear"] >= 3 and static["DequantizeLinear"] >= 6  # QDQ around every layer's input, weight
    assert openvino["FakeQuantize"] >= 3
    assert all(peer.recipe.split()[1][0].isdigit() for peer in peers.values())  # each names its tool's version
    float_accuracy = accuracy(predict(runtime_for(mlp).load(mlp, 2), digits.test), digits.test.y, None)
    for peer in peers.values():
        run = peer.load(2)
        assert run(digits.test.x[:1]).shape == (1, 10) and run(digits.test.x[:32]).shape == (32, 10)  # dynamic batch
        peer_accuracy = accuracy(predict(run, digits.test), digits.test.y, None)
        assert peer_accuracy == pytest.approx(float_accuracy, abs=0.02), peer.name
        assert peer.size_bytes > 0


def _row(name: str, b1: float, b32: float, drop: float, peer: bool = True) -> dict[str, object]:
    return {"variant": name, "peer": peer, "p50_ms_b1": b1, "p50_ms_b32": b32, "accuracy_drop_points": drop}


def test_the_reference_is_the_fastest_peer_within_the_constraint_else_the_fastest_peer() -> None:
    rows = [_row("torch", 1.0, 9.0, 0.0, peer=False), _row("fast but lossy", 0.1, 1.0, 2.0),
            _row("quick at batch 1", 0.2, 4.0, 0.1), _row("quick at batch 32", 0.3, 2.0, 0.4)]
    references = mark_references(rows, lambda r: r["accuracy_drop_points"] <= 0.5)
    assert references[1]["variant"] == "quick at batch 1" and references[32]["variant"] == "quick at batch 32"
    assert rows[2]["reference_b1"] == "the fastest peer within the constraint" and "reference_b32" not in rows[2]
    lossy = [_row("torch", 1.0, 9.0, 0.0, peer=False), _row("a", 0.2, 2.0, 3.0), _row("b", 0.1, 3.0, 1.0)]
    references = mark_references(lossy, lambda r: r["accuracy_drop_points"] <= 0.5)
    assert references[1]["variant"] == "b" and references[32]["variant"] == "a"
    assert lossy[2]["reference_b1"] == "the fastest peer: none holds the constraint"
