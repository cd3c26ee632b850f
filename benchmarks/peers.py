"""The real peer tools a user would pick instead of tradeoff for all-MiniLM-L6-v2 on a CPU, as models tradeoff's
benchmark times in its own process.

The peers (Hugging Face Optimum, sentence-transformers' ONNX and OpenVINO backends) need an older transformers
than tradeoff, so `peer_models()` builds their own virtualenv (pinned in peers-requirements.txt, torch held at
2.13.0 by peers-constraints.txt so pip takes the CPU wheel), runs peers_produce.py inside it on the local
MiniLM folder (offline), and reads back one manifest per peer. Both steps are cached in TRADEOFF_PEERS_CACHE
(default ~/.cache/tradeoff-peers), keyed by the pins. Every peer graph ends at token embeddings
(`last_hidden_state`, sentence-transformers pools outside the graph in torch); `with_pooling` appends the same
mean pooling over the attention mask and L2 normalization, and computes the all-zero `token_type_ids` in the
graph, so each peer reads what tradeoff's export reads and returns the same normalized embedding.

Measured here (2-core AMD EPYC with AVX-512 VNNI and bf16, 2026-12-06): the venv build took 54 s (transformers
4.57.6, optimum 2.1.0, optimum-onnx 0.1.0, optimum-intel 1.27.0, sentence-transformers 5.7.0, onnxruntime 1.32.0,
openvino 2026.4.1, nncf 3.4.0), the production of all seven models 75 s (the OpenVINO static int8 calibration is
most of it); adding `datasets` to a built venv 20 s. The preset chosen was avx512_vnni. Cosine to tradeoff's FP32
export on 8 texts of 128 tokens: the FP32 peers 1.0000 (OpenVINO's, which runs bf16 by default on this CPU,
0.99999); sentence-transformers' qint8 ONNX 0.9925 (min 0.9896), its OpenVINO static int8 0.9976 (min 0.9968);
Optimum's documented avx512_vnni(per_channel=False) dynamic 0.941 (min 0.924) and static 0.800 (min 0.771):
per-tensor weights (and, static, QDQ on every Add/Mul/Softmax its preset lists) lose that much on MiniLM.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from tradeoff.model import ModelHandle

HERE = Path(__file__).resolve().parent
REQUIREMENTS, CONSTRAINTS, PRODUCER = (HERE / "peers-requirements.txt", HERE / "peers-constraints.txt",
                                       HERE / "peers_produce.py")
CALIBRATION_TEXTS = 300  # export_static_quantized_openvino_model's sample count


def cache_folder() -> Path:
    return Path(os.environ.get("TRADEOFF_PEERS_CACHE", Path.home() / ".cache" / "tradeoff-peers"))


def _key(*parts: bytes) -> str:
    return hashlib.sha256(b"".join(parts)).hexdigest()[:16]


def _pins_key() -> str:
    """What the venv depends on: the pins and the interpreter."""
    return _key(REQUIREMENTS.read_bytes(), CONSTRAINTS.read_bytes(), sys.version.encode())


def _models_key() -> str:
    """What the peers' models depend on: the venv and the producing script."""
    return _key(_pins_key().encode(), PRODUCER.read_bytes())


def ensure_venv() -> Path:
    """The peers' interpreter, installing their virtualenv when the pins changed since it was built."""
    venv = cache_folder() / "venv"
    stamp, python = venv / "tradeoff-pins", venv / "bin" / "python"
    if stamp.exists() and stamp.read_text() == _pins_key():
        return python
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--constraint", str(CONSTRAINTS),
                    "-r", str(REQUIREMENTS)], check=True)
    stamp.write_text(_pins_key())
    return python


@dataclass(frozen=True)
class Peer:
    """One peer's model as its tool made it, and how tradeoff's benchmark runs it."""

    name: str
    manifest: dict[str, Any]
    path: Path  # the graph file (.onnx, or OpenVINO .xml with its .bin)

    @property
    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in (self.path, self.path.with_suffix(".bin")) if p.exists())

    def handle(self) -> ModelHandle:
        """The ONNX peers as tradeoff model handles, pooling appended (run on ONNX Runtime, their tools' runtime)."""
        if self.manifest["format"] != "onnx":
            raise ValueError(f"{self.name} is an OpenVINO IR, not ONNX: time it with load_openvino")
        return ModelHandle(onnx_bytes=with_pooling(onnx.load(str(self.path))).SerializeToString(),
                           runtime="onnxruntime")

    def load_openvino(self, threads: int) -> Callable[[np.ndarray], np.ndarray]:
        """An OpenVINO IR peer compiled as optimum-intel compiles it for sentence-transformers (latency hint,
        OpenVINO's default inference precision for this CPU) on `threads` threads, pooling appended in the graph;
        it takes tradeoff's structured token batches."""
        from tradeoff.inputs import as_feeds
        from tradeoff.runtimes.openvino import openvino_core

        model = _ir_with_pooling(openvino_core().read_model(str(self.path)))
        compiled = openvino_core().compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                                "PERFORMANCE_HINT": "LATENCY"})
        request = compiled.create_infer_request()

        def run(batch: np.ndarray) -> np.ndarray:
            feeds = as_feeds(batch, ["input_ids", "attention_mask"])
            feeds["token_type_ids"] = np.zeros_like(feeds["input_ids"])
            return np.array(request.infer(feeds)[0], dtype=np.float32)

        return run


def with_pooling(graph: onnx.ModelProto) -> onnx.ModelProto:
    """`graph` (token embeddings out) with sentence-transformers' mean pooling and L2 normalization appended, as
    the single output `output`; a `token_type_ids` input becomes zeros shaped like `input_ids`."""
    model = onnx.ModelProto()
    model.CopyFrom(graph)
    g = model.graph
    hidden = g.output[0].name
    if any(i.name == "token_type_ids" for i in g.input):
        g.input.remove(next(i for i in g.input if i.name == "token_type_ids"))
        zeros = [helper.make_node("Shape", ["input_ids"], ["pool/ids_shape"]),
                 helper.make_node("ConstantOfShape", ["pool/ids_shape"], ["token_type_ids"],
                                  value=helper.make_tensor("zero", TensorProto.INT64, [1], [0]))]
        nodes = zeros + list(g.node)  # topological order: the zeros come before their readers
        del g.node[:]
        g.node.extend(nodes)
    g.initializer.extend([helper.make_tensor("pool/tokens", TensorProto.INT64, [1], [1]),
                          helper.make_tensor("pool/features", TensorProto.INT64, [1], [-1]),
                          helper.make_tensor("pool/channel", TensorProto.INT64, [1], [2]),
                          helper.make_tensor("pool/eps", TensorProto.FLOAT, [], [1e-9]),
                          helper.make_tensor("pool/norm_eps", TensorProto.FLOAT, [], [1e-12])])
    g.node.extend([  # sum(hidden * mask) / max(sum(mask), eps), then x / max(||x||, eps): torch's F.normalize
        helper.make_node("Cast", ["attention_mask"], ["pool/mask"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["pool/mask", "pool/channel"], ["pool/mask3"]),
        helper.make_node("Mul", [hidden, "pool/mask3"], ["pool/masked"]),
        helper.make_node("ReduceSum", ["pool/masked", "pool/tokens"], ["pool/sum"], keepdims=0),
        helper.make_node("ReduceSum", ["pool/mask3", "pool/tokens"], ["pool/count"], keepdims=0),
        helper.make_node("Max", ["pool/count", "pool/eps"], ["pool/count_safe"]),
        helper.make_node("Div", ["pool/sum", "pool/count_safe"], ["pool/mean"]),
        helper.make_node("Mul", ["pool/mean", "pool/mean"], ["pool/squares"]),
        helper.make_node("ReduceSum", ["pool/squares", "pool/features"], ["pool/norm2"], keepdims=1),
        helper.make_node("Sqrt", ["pool/norm2"], ["pool/norm"]),
        helper.make_node("Max", ["pool/norm", "pool/norm_eps"], ["pool/norm_safe"]),
        helper.make_node("Div", ["pool/mean", "pool/norm_safe"], ["output"]),
    ])
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", None]))
    onnx.checker.check_model(model)
    return model


def _ir_with_pooling(model: Any) -> Any:
    """The OpenVINO counterpart of `with_pooling` (token_type_ids stays an input: `load_openvino` feeds zeros)."""
    import openvino.opset13 as ops

    mask_param = next(p for p in model.get_parameters() if p.get_output_tensor(0).get_any_name() == "attention_mask")
    hidden = model.get_results()[0].input_value(0)  # the node the Result reads, not the Result
    mask = ops.unsqueeze(ops.convert(mask_param, "f32"), ops.constant(np.array([2], dtype=np.int64)))
    summed = ops.reduce_sum(ops.multiply(hidden, mask), ops.constant(np.array([1], dtype=np.int64)), False)
    count = ops.maximum(ops.reduce_sum(mask, ops.constant(np.array([1], dtype=np.int64)), False),
                        ops.constant(np.array(1e-9, dtype=np.float32)))
    normalized = ops.normalize_l2(ops.divide(summed, count), ops.constant(np.array([-1], dtype=np.int64)),
                                  1e-12, "max")
    model.remove_result(model.get_results()[0])
    model.add_results([ops.result(normalized)])
    return model


def peer_models(model_dir: Path, calibration_texts: list[str]) -> list[Peer]:
    """Every peer's model of `model_dir`, made in the peers' venv once per pin set and read back."""
    python = ensure_venv()
    out = cache_folder() / "models" / f"{Path(model_dir).parent.name}-{_models_key()}"
    if not (out / "done").exists():
        for stale in out.parent.glob(f"{Path(model_dir).parent.name}-*"):  # made by older pins or producer
            shutil.rmtree(stale)
        out.mkdir(parents=True)
        texts = out / "calibration.txt"
        texts.write_text("\n".join(t.replace("\n", " ") for t in calibration_texts[:CALIBRATION_TEXTS]))
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": ""}
        subprocess.run([str(python), str(PRODUCER), str(model_dir), str(out), str(texts)], check=True, env=env,
                       cwd=out)
        (out / "done").write_text("")
    peers = []
    for manifest_file in sorted(out.glob("*/manifest.json")):
        manifest = json.loads(manifest_file.read_text())
        peers.append(Peer(manifest_file.parent.name, manifest, manifest_file.parent / manifest["model"]))
    return peers
