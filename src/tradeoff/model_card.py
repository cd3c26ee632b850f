"""best/README.md: the model card optimize writes beside the artifact. It says what the model is and how it was made,
what it measured against the original on the test split, and how to run it, with tradeoff and, for an ONNX artifact,
with ONNX Runtime or OpenVINO alone: every ```python block in it runs as it stands from inside best/ (the tests run
them)."""

from __future__ import annotations

from typing import Any

import onnx

from tradeoff.errors import RuntimeBackendError
from tradeoff.evaluation import Measurement
from tradeoff.huggingface import FACTORY_PREFIX
from tradeoff.model import ModelHandle
from tradeoff.passes.fuse_transformer import has_ort_fused_operators
from tradeoff.recipe import Recipe
from tradeoff.runtimes.openvino import OpenVino, compile_onnx
from tradeoff.runtimes.precision import inference_precision
from tradeoff.serving import PREDICTOR_FILE, TOKENIZER_DIR, ServingSpec

FORMAT_NAMES = {"onnx": "an ONNX", "torch": "a torch"}
ORIGIN_KEYS = ("source", "path", "factory", "options", "class", "format")  # task.yaml's model: what the original was
SAMPLE_TEXTS = ["A first sentence to run through the model.", "Another, somewhat longer sentence, to show padding."]


def model_card(name: str, origin: dict[str, Any], recipe: Recipe, best: Measurement, baseline: Measurement,
               metric: str, env: dict[str, Any], spec: ServingSpec, model: ModelHandle) -> str:
    """The card's Markdown; `origin` is where the original model came from (the task's `model` section)."""
    sections = [f"# {name}: optimized by tradeoff\n", _what(origin, recipe, best),
                _measured(best, baseline, metric, env), _inputs(spec)]
    if model.format == "onnx" or model.factory is not None:  # a module given in Python has no factory to rebuild it
        sections.append(_with_tradeoff(spec))
    if model.onnx_bytes is not None:
        graph = onnx.load_from_string(model.onnx_bytes)
        sections.append(_with_onnxruntime(graph, spec))
        sections.append(_with_openvino(graph, spec))
    else:
        sections.append(_torch_only(best, model))
    return "\n".join(sections)


def _what(origin: dict[str, Any], recipe: Recipe, best: Measurement) -> str:
    source = ", ".join(f"{key}: `{origin[key]}`" for key in ORIGIN_KEYS if origin.get(key))
    steps = "\n".join(f"{n}. `{step['pass']}` {_options(step)}" for n, step in enumerate(recipe.steps, start=1))
    return (f"The original model ({source}) made cheaper by the recipe below (`recipe.yaml`; replay it with "
            f"`tradeoff apply recipe.yaml --task <task>`), saved as {FORMAT_NAMES[best.format]} artifact that runs on "
            f"**{best.runtime}**.\n\n## Recipe\n\n{steps or 'No step beat the original: this is the original model.'}"
            "\n")


def _options(step: dict[str, Any]) -> str:
    options = {k: v for k, v in step.items() if k not in ("pass", "version")}
    return ", ".join(f"{k}={v}" for k, v in options.items())


def _measured(best: Measurement, baseline: Measurement, metric: str, env: dict[str, Any]) -> str:
    rows = [("split", baseline.split, best.split), (metric, f"{baseline.metric:.4f}", f"{best.metric:.4f}")]
    for batch, timed in best.latency.items():
        base = baseline.latency.get(batch)
        shape = "x".join(str(n) for n in timed.input_shape)
        rows.append((f"latency p50 / p95, batch {batch} (input {shape})",
                     f"{base.p50_ms:.3f} / {base.p95_ms:.3f} ms" if base else "-",
                     f"{timed.p50_ms:.3f} / {timed.p95_ms:.3f} ms"))
    rows += [("runtime", baseline.runtime, best.runtime), ("threads", _threads(baseline), _threads(best)),
             ("format", baseline.format, best.format),
             ("size on disk", f"{baseline.size.bytes:,} B", f"{best.size.bytes:,} B"),
             ("size, zstd", f"{baseline.size.zstd_bytes:,} B", f"{best.size.zstd_bytes:,} B"),
             ("parameters (non-zero)", f"{baseline.params:,} ({baseline.nonzero_params:,})",
              f"{best.params:,} ({best.nonzero_params:,})")]
    table = "\n".join(f"| {name} | {base} | {shipped} |" for name, base, shipped in rows)
    cpu = env.get("cpu", {})
    machine = f"{cpu.get('model', 'an unknown CPU')} ({cpu.get('cores', '?')} cores)"
    return (f"## Measured on the test split\n\n| | original | this model |\n|---|---|---|\n{table}\n\n"
            f"Timed in one process, interleaved rounds, on {machine}. Latency on another CPU differs: measure it "
            "there (`tradeoff evaluate`).\n")


def _threads(measured: Measurement) -> str:
    return str(measured.primary_latency.threads) if measured.primary_latency else "-"


def _inputs(spec: ServingSpec) -> str:
    if spec.inputs == "text":
        return (f"## Inputs\n\nTexts, tokenized by `{TOKENIZER_DIR}/` (copied here) to at most {spec.max_length} "
                "tokens, padded to the longest text of a batch; the graph reads `input_ids` and `attention_mask` and "
                "returns one output per text: a sentence encoder's pooling and normalization, or a classifier's head, "
                "are part of it.\n")
    shape = ", ".join(str(n) for n in spec.shape)
    named = f" Columns, in order: {', '.join(spec.feature_names)}." if spec.feature_names else ""
    scaled = (f" The task standardized them with the training split's mean and std, which `{PREDICTOR_FILE}` holds: "
              "`to.load` applies them, and the snippets below show how." if spec.mean is not None else "")
    return f"## Inputs\n\nfloat32 arrays of shape (batch, {shape}), as the task's data held them.{named}{scaled}\n"


def _sample(spec: ServingSpec) -> str:
    """Lines that make a sample batch as the application holds it (`x`, or `texts` and their tokens as `batch`), and,
    where the task standardized its data, the training split's `mean` and `std`."""
    lines = _rows(spec)
    if spec.inputs == "text":
        lines += (f'tokenizer = AutoTokenizer.from_pretrained("{TOKENIZER_DIR}")\n'
                  f"batch = tokenizer(texts, truncation=True, max_length={spec.max_length}, padding=True, "
                  'return_tensors="np")\n')
    if spec.mean is not None:
        lines += (f'scaling = json.load(open("{PREDICTOR_FILE}"))  # the training split\'s mean and std\n'
                  'mean, std = np.asarray(scaling["mean"], np.float32), np.asarray(scaling["std"], np.float32)\n')
    return lines


def _rows(spec: ServingSpec) -> str:
    """The line that makes a sample batch as the application holds it: `texts`, or raw rows `x`."""
    if spec.inputs == "text":
        return f"texts = {SAMPLE_TEXTS!r}\n"
    shape = ", ".join(str(n) for n in [4, *spec.shape])
    return f"x = np.random.default_rng(0).random(({shape}), dtype=np.float32)  # your inputs, one row per sample\n"


def _with_tradeoff(spec: ServingSpec) -> str:
    call = "model.encode(texts)" if spec.inputs == "text" else "model.predict(x)"
    return ("## Run it with tradeoff\n\nFrom inside this folder (or give its path): the MANIFEST is checked, and the "
            "model runs on the runtime and threads it was measured with (`to.load(path, threads=...)` changes the "
            "threads).\n\n```python\nimport numpy as np\n\nimport tradeoff as to\n\n"
            f"model = to.load(\".\")\n{_rows(spec)}outputs = {call}\nprint(outputs.shape)\n```\n")


def _feeds(graph: onnx.ModelProto, spec: ServingSpec) -> str:
    """The feed dict by the graph's input names: token ids and mask, or the rows (scaled, cast) as the graph takes
    them."""
    initializers = {t.name for t in graph.graph.initializer}
    names = [i.name for i in graph.graph.input if i.name not in initializers]
    if spec.inputs == "text":
        return "{" + ", ".join(f'"{n}": batch["{n}"].astype(np.int64)' for n in names) + "}"
    rows = "((x - mean) / std)" if spec.mean is not None else "x"
    if graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16:
        rows += ".astype(np.float16)"
    return f'{{"{names[0]}": {rows}}}'


def _imports(spec: ServingSpec, runtime_import: str) -> str:
    lines = ["import json\n" if spec.mean is not None else "", "import numpy as np\n", runtime_import]
    if spec.inputs == "text":
        lines.append("from transformers import AutoTokenizer\n")
    return "".join(lines)


def _packages(spec: ServingSpec, runtime: str) -> str:
    return f"`pip install {runtime} numpy{' transformers' if spec.inputs == 'text' else ''}`"


def _precision(graph: onnx.ModelProto) -> str:
    return inference_precision({p.key: p.value for p in graph.metadata_props})


def _with_onnxruntime(graph: onnx.ModelProto, spec: ServingSpec) -> str:
    if _precision(graph) == "bf16":
        return ("## Run it with ONNX Runtime\n\nThis graph asks for bf16 inference, which ONNX Runtime's CPU provider "
                "does not run: use OpenVINO (below).\n")
    return (f"## Run it with ONNX Runtime alone\n\nNo tradeoff needed ({_packages(spec, 'onnxruntime')}); from "
            "inside this folder:\n\n```python\n"
            f"{_imports(spec, 'import onnxruntime as ort' + chr(10))}\n"
            f"options = ort.SessionOptions()\noptions.intra_op_num_threads = {spec.threads}\n"
            'session = ort.InferenceSession("model.onnx", options, providers=["CPUExecutionProvider"])\n'
            f"{_sample(spec)}outputs = session.run(None, {_feeds(graph, spec)})[0]\nprint(outputs.shape)\n```\n")


def _openvino_refusal(graph: onnx.ModelProto) -> str | None:
    """Why this machine's OpenVINO cannot compile a graph that holds ONNX Runtime's own operators; None where it
    can, or where the graph has none of them (OpenVINO 2026.4 loads fused attention, not quantized attention)."""
    if not has_ort_fused_operators(graph):
        return None
    if not OpenVino.available():
        return "OpenVINO is not installed where this card was written, so whether it loads them is untested"
    try:
        compile_onnx(graph.SerializeToString(), 1)
    except RuntimeBackendError as exc:
        return exc.message
    return None


def _with_openvino(graph: onnx.ModelProto, spec: ServingSpec) -> str:
    if (refusal := _openvino_refusal(graph)) is not None:
        return (f"## OpenVINO\n\nThis graph holds ONNX Runtime's own operators (domain com.microsoft): {refusal}. "
                "Run it with ONNX Runtime.\n")
    return (f"## Run it with OpenVINO alone\n\n{_packages(spec, 'openvino')}; the precision is pinned (OpenVINO would "
            "otherwise run float layers in bf16 on CPUs that have it); from inside this folder:\n\n```python\n"
            f"{_imports(spec, 'import openvino as ov' + chr(10))}\n"
            'compiled = ov.Core().compile_model("model.onnx", "CPU", {"INFERENCE_NUM_THREADS": '
            f'{spec.threads}, "INFERENCE_PRECISION_HINT": "{_precision(graph)}"}})\n'
            f"{_sample(spec)}outputs = compiled({_feeds(graph, spec)})[0]\nprint(outputs.shape)\n```\n")


def _torch_only(best: Measurement, model: ModelHandle) -> str:
    stored = ("## Without tradeoff\n\nThis artifact is a torch state dict (`model.safetensors` or `model.pt`), "
              f"measured on {best.runtime}, whose structure tradeoff rebuilds: the original's module, then each "
              "structure step the recipe recorded (`artifact.json`), with sparse weights stored compactly. Plain torch "
              "cannot load it as it stands")
    onnx_hint = "replay the recipe with an `export.onnx` step to get a graph that runs without tradeoff"
    if model.factory is None:
        return (f"{stored}, and neither can `to.load`: the original was a module given in Python, with no factory "
                f"to build it from. Give optimize a task file whose model names a factory, or {onnx_hint}.\n")
    folder = model.factory.removeprefix(FACTORY_PREFIX).partition(":")[2]
    needs = (f"the Hugging Face folder it was made from, `{folder}`" if model.factory.startswith(FACTORY_PREFIX) else
             f"the factory's code (`{model.factory}`), imported from the folders `{PREDICTOR_FILE}` names or the "
             "installed packages")
    return f"{stored}: use `to.load` above, which needs {needs}, or {onnx_hint}.\n"
