"""Sensitivity-guided mixed precision where plain int8 breaks the constraint: all-MiniLM-L6-v2 (128-token texts,
2 threads), ONNX Runtime dynamic int8 with per-tensor weights, which loses several points of mean cosine against the
FP32 export (the constraint: at most 0.01). The sensitivity of each of its weight layers to that quantization alone
is measured on validation. The mixed model gives the k most sensitive layers a weight scale per output channel
(`per_channel_layers`) where the rest keep one per tensor, k the smallest that meets the constraint on validation (the
test split decides nothing); beside it, the same with the k most sensitive kept in float, and int8 per channel in
every layer. All are measured on test, timed in 7 interleaved rounds at batch 1 and 32; speed-ups compare each
model's fastest round (batch 1 is bimodal on these VMs, docs/NOTES.md trap 13). Targets (issue 15): the mixed
model meets the constraint on test, recovers >= 50% of int8's drop, and keeps >= 80% of int8's speed-up over FP32 at
both batch sizes.

On the same case, quantization-aware training (quantize.qat, then static int8 of the MatMul layers) against the same
static int8 post-training: what QAT recovers where post-training int8 does lose (reported, no target).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import tradeoff as to
from benchmarks.common import target
from benchmarks.timing import EMBEDDING_FIDELITY, THREADS, handle_variant, rows_for
from benchmarks.transformers_cpu import MINILM, TOKENS, long_texts
from tradeoff.config import ModelSpec, SensitivitySpec
from tradeoff.evaluation import Evaluator
from tradeoff.insight.sensitivity import measure_sensitivity
from tradeoff.metrics import get_metric
from tradeoff.model import ModelHandle, load_model
from tradeoff.passes import Context, build_pass

MAX_DROP = 0.01
INT8 = {"pass": "quantize.dynamic", "per_channel": False}
KEPT = (1, 2, 3, 4, 6, 8, 12, 16)  # the most sensitive layers spared, tried in this order on validation
ROUNDS = 7  # interleaved timing rounds: enough for every model to show its fast batch-1 mode
SPARED = {"per channel": "per_channel_layers", "in float": "keep_float"}  # the mixed model's form first


def _drop(evaluator: Evaluator, model: ModelHandle, split: str) -> float:
    return 1.0 - evaluator.score(model, split)


def _kept(ours: dict[str, Any], int8: dict[str, Any], batch: int) -> float:
    """The strict reading of "keeps 80% of int8's speed-up": of the time int8 saves against FP32, the share the
    mixed model saves too (a 3x int8 and a 2.6x mixed model keep 0.9 of it)."""
    saved = 1 - 1 / int8[f"speedup_b{batch}"]
    return (1 - 1 / ours[f"speedup_b{batch}"]) / saved if saved > 0 else 0.0


def measure(quick: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "texts.txt"
        corpus.write_text("\n".join(long_texts(200 if quick else 500)))
        data = to.data.text(corpus, tokenizer=MINILM, max_length=TOKENS, split=(0.4, 0.2, 0.4))
    model = load_model(ModelSpec(source="huggingface", path=MINILM))
    ctx = Context(data=data, threads=THREADS, teacher=model, metric=get_metric("cosine"))
    evaluator = Evaluator(model, data, get_metric("cosine"), THREADS, (1, 32))
    exported = build_pass({"pass": "export.onnx"}).apply(model, ctx)
    plain = build_pass(INT8).apply(exported, ctx)
    started = time.perf_counter()
    sensitivity = measure_sensitivity(exported, evaluator, ctx, SensitivitySpec(quantize=(INT8,), prune=()),
                                      quiet=False)
    sensitivity_s = time.perf_counter() - started
    ranking = sensitivity.ranking("quantize")
    tried: list[dict[str, Any]] = []
    mixed: list[tuple[str, ModelHandle, str]] = []
    for form, option in SPARED.items():  # the smallest k that meets the constraint, or else the largest tried
        for k in (k for k in KEPT if k <= len(ranking)):
            candidate = build_pass({**INT8, option: ranking[:k]}).apply(exported, ctx)
            drop = _drop(evaluator, candidate, "val")
            tried.append({"variant": f"int8, {k} most sensitive {form}", "val_drop": drop})
            print(f"  {tried[-1]['variant']}: validation drop {drop:.4f}", flush=True)
            if drop <= MAX_DROP:
                break
        mixed.append((f"mixed: {k} most sensitive {form}", candidate, f"... {option}={list(ranking[:k])}"))
    per_channel = build_pass({**INT8, "per_channel": True}).apply(exported, ctx)
    variants = [("ONNX Runtime FP32", exported, "export.onnx"),
                ("int8 per-tensor (plain)", plain, "export.onnx -> quantize.dynamic per_channel=False"),
                *mixed, ("int8 per-channel, every layer", per_channel, "... per_channel=True")]
    rows = rows_for([handle_variant(*variant) for variant in variants], evaluator,
                    EMBEDDING_FIDELITY, rounds=ROUNDS)
    fp32, int8, ours = rows[0], rows[1], rows[2]
    for row in rows:  # speed-ups from each model's fastest round: its fast mode (NOTES trap 13), alike for all
        row["drop"] = 1.0 - row["cosine_mean"]
        for batch in (1, 32):
            row[f"speedup_b{batch}"] = fp32[f"fastest_round_p50_ms_b{batch}"] / row[f"fastest_round_p50_ms_b{batch}"]
    for row in rows:
        for batch in (1, 32):
            row[f"share_of_int8_time_saved_b{batch}"] = _kept(row, int8, batch)
    recovered = (int8["drop"] - ours["drop"]) / int8["drop"] if int8["drop"] > 0 else 0.0
    rows.append({"variant": "sensitivity", "seconds": sensitivity_s, "layers": len(sensitivity.layers),
                 "ranking_top": list(ranking[:8]), "tried_on_validation": tried})
    rows += _qat_against_static(model, exported, ctx, evaluator, quick)
    targets = [
        target("mixed precision: cosine drop on test", ours["drop"], MAX_DROP, "<="),
        target("mixed precision: share of int8's drop recovered", recovered, 0.5, ">="),
        *(target(f"mixed precision: share of int8's time saved that it keeps, batch {b}",
                 ours[f"share_of_int8_time_saved_b{b}"], 0.8, ">=") for b in (1, 32)),
    ]
    return rows, targets


def _qat_against_static(model: ModelHandle, exported: ModelHandle, ctx: Context, evaluator: Evaluator,
                        quick: bool) -> list[dict[str, Any]]:
    """Static int8 of the MatMul layers (what QAT simulates: their weights per channel, their inputs per tensor)
    after training with int8 in the loop, against the same quantizer post-training."""
    static = {"pass": "quantize.static", "operators": ["MatMul"]}
    ptq = build_pass(static).apply(exported, ctx)
    trained = build_pass({"pass": "quantize.qat", "finetune_epochs": 1 if quick else 3}).apply(model, ctx)
    qat = build_pass(static).apply(build_pass({"pass": "export.onnx"}).apply(trained, ctx), ctx)
    return [{"variant": name, "test_drop": _drop(evaluator, built, "test"), "val_drop": _drop(evaluator, built, "val")}
            for name, built in (("static int8 post-training", ptq), ("quantize.qat then static int8", qat))]
