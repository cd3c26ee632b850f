"""Runs INSIDE the peers' virtualenv (benchmarks/peers.py builds it and calls this): each peer tool makes its model
of all-MiniLM-L6-v2 the way its own docs show, and a manifest.json per peer says what it made.

No tradeoff import here: this interpreter has the peers' older transformers. Usage:
    python peers_produce.py MODEL_DIR OUT_DIR CALIBRATION_TEXTS.txt
"""

from __future__ import annotations

import json
import shutil
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

CPU_PRESETS = ("avx512_vnni", "avx512", "avx2")  # Optimum's AutoQuantizationConfig x86 presets, best first
CALIBRATION_SAMPLES = 50  # Optimum's static quantization guide calibrates on 50 sentences


def cpu_preset() -> str:
    """The AutoQuantizationConfig preset this CPU's flags fit (avx512 means avx512f)."""
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    wanted = {"avx512_vnni": "avx512_vnni", "avx512": "avx512f", "avx2": "avx2"}
    return next(preset for preset in CPU_PRESETS if wanted[preset] in flags)


def graph_io(path: Path) -> dict[str, list[str]]:
    if path.suffix == ".onnx":
        import onnx

        graph = onnx.load(str(path), load_external_data=False).graph
        return {"inputs": [i.name for i in graph.input], "outputs": [o.name for o in graph.output]}
    import openvino as ov

    model = ov.Core().read_model(str(path))
    return {"inputs": [p.get_any_name() for p in model.inputs], "outputs": [p.get_any_name() for p in model.outputs]}


def pooling_of(model_dir: Path) -> dict[str, Any]:
    """How sentence-transformers pools this model's token embeddings (outside every peer's graph)."""
    modules = json.loads((model_dir / "modules.json").read_text())
    pooling = next(m for m in modules if m["type"].endswith("Pooling"))
    config = json.loads((model_dir / pooling["path"] / "config.json").read_text())
    mode = next(k.removeprefix("pooling_mode_").removesuffix("_tokens") for k, v in config.items()
                if k.startswith("pooling_mode_") and v)
    return {"in_graph": False, "mode": mode, "normalize": any(m["type"].endswith("Normalize") for m in modules),
            "token_output": "last_hidden_state"}


def write_manifest(folder: Path, tool: str, packages: list[str], configuration: dict[str, Any], model: Path,
                   pooling: dict[str, Any]) -> None:
    manifest = {"tool": tool, "versions": {p: version(p) for p in packages}, "configuration": configuration,
                "model": str(model.relative_to(folder)), "format": "onnx" if model.suffix == ".onnx" else "openvino",
                **graph_io(model), "pooling": pooling}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"{folder.name}: {model.name} {manifest['inputs']} -> {manifest['outputs']}", flush=True)


def optimum(model_dir: Path, out: Path, preset: str, texts: list[str], pooling: dict[str, Any]) -> None:
    """Optimum's guides: export, ORTOptimizer at O2 (FP32), and ORTQuantizer dynamic with the CPU's preset on the
    export. Quantizing the O2 graph instead fails in onnxruntime 1.32 (its shape inference loses the types after
    the contrib-op fusions, and ORTQuantizer passes no DefaultTensorType), so int8 starts from the export, as
    Optimum's quantization guide does; ONNX Runtime fuses the int8 graph itself when it loads it."""
    from optimum.onnxruntime import (
        AutoOptimizationConfig,
        AutoQuantizationConfig,
        ORTModelForFeatureExtraction,
        ORTOptimizer,
        ORTQuantizer,
    )

    packages = ["optimum", "optimum-onnx", "onnxruntime", "transformers"]
    exported = ORTModelForFeatureExtraction.from_pretrained(model_dir, export=True)
    fp32 = out / "optimum-O2"
    ORTOptimizer.from_pretrained(exported).optimize(AutoOptimizationConfig.O2(), save_dir=fp32)
    write_manifest(fp32, "Hugging Face Optimum", packages,
                   {"export": "ORTModelForFeatureExtraction(export=True)", "optimizer": "AutoOptimizationConfig.O2()"},
                   fp32 / "model_optimized.onnx", pooling)
    int8 = out / f"optimum-int8-dynamic-{preset}"
    quantization = getattr(AutoQuantizationConfig, preset)(is_static=False, per_channel=False)
    ORTQuantizer.from_pretrained(exported).quantize(quantization, save_dir=int8)
    write_manifest(int8, "Hugging Face Optimum", packages,
                   {"export": "ORTModelForFeatureExtraction(export=True)",
                    "quantizer": f"AutoQuantizationConfig.{preset}(is_static=False, per_channel=False)",
                    "quantization": {"format": str(quantization.format), "mode": str(quantization.mode),
                                     "weights_dtype": str(quantization.weights_dtype),
                                     "operators": list(quantization.operators_to_quantize),
                                     "reduce_range": quantization.reduce_range}},
                   int8 / "model_quantized.onnx", pooling)
    optimum_static(model_dir, out, exported, preset, texts, pooling)


def optimum_static(model_dir: Path, out: Path, exported: Any, preset: str, texts: list[str],
                   pooling: dict[str, Any]) -> None:
    """Optimum's static int8 as its quantization guide shows: the CPU's preset with is_static=True and
    per_channel=False, MinMax ranges from a calibration set tokenized to max_length with padding (the guide's 50 SST-2
    sentences; here local texts: the machine is offline), then ORTQuantizer.quantize with those ranges."""
    from datasets import Dataset
    from optimum.onnxruntime import AutoCalibrationConfig, AutoQuantizationConfig, ORTQuantizer
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    calibration = Dataset.from_dict(dict(tokenizer(texts[:CALIBRATION_SAMPLES], padding="max_length",
                                                   max_length=128, truncation=True)))
    folder = out / f"optimum-int8-static-{preset}"
    quantization = getattr(AutoQuantizationConfig, preset)(is_static=True, per_channel=False)
    quantizer = ORTQuantizer.from_pretrained(exported)
    ranges = quantizer.fit(dataset=calibration, calibration_config=AutoCalibrationConfig.minmax(calibration),
                           operators_to_quantize=quantization.operators_to_quantize,
                           onnx_augmented_model_name=out / "augmented_model.onnx")
    quantizer.quantize(quantization, save_dir=folder, calibration_tensors_range=ranges)
    (out / "augmented_model.onnx").unlink(missing_ok=True)
    write_manifest(folder, "Hugging Face Optimum", ["optimum", "optimum-onnx", "onnxruntime", "transformers"],
                   {"export": "ORTModelForFeatureExtraction(export=True)",
                    "quantizer": f"AutoQuantizationConfig.{preset}(is_static=True, per_channel=False)",
                    "calibration": f"AutoCalibrationConfig.minmax on {len(calibration)} local texts padded to 128 "
                                   "tokens (the guide calibrates on SST-2, a download, offline here)",
                    "quantization": {"format": str(quantization.format), "mode": str(quantization.mode),
                                     "operators": list(quantization.operators_to_quantize)}},
                   folder / "model_quantized.onnx", pooling)


ST_TOOLS = {"onnx": "sentence-transformers (ONNX backend)", "openvino": "sentence-transformers (OpenVINO backend)"}
ST_GRAPHS = {"onnx": Path("onnx") / "model.onnx", "openvino": Path("openvino") / "openvino_model.xml"}


def _float_model_and_int8_folder(model_dir: Path, out: Path, backend: str, packages: list[str],
                                 pooling: dict[str, Any], int8_name: str) -> tuple[Any, Path]:
    """sentence-transformers' float model on `backend`, saved with its manifest as out/st-<backend>, and a copy of
    that folder named `int8_name` for the backend's quantizer to add its graph to: the loaded model and the copy."""
    from sentence_transformers import SentenceTransformer

    folder = out / f"st-{backend}"
    model = SentenceTransformer(str(model_dir), backend=backend, device="cpu")
    model.save(str(folder))
    write_manifest(folder, ST_TOOLS[backend], packages, {"backend": backend}, folder / ST_GRAPHS[backend], pooling)
    shutil.copytree(folder, out / int8_name)
    return model, out / int8_name


def sentence_transformers_onnx(model_dir: Path, out: Path, preset: str, pooling: dict[str, Any]) -> None:
    """sentence-transformers' ONNX backend, and its export_dynamic_quantized_onnx_model with the CPU's preset."""
    from sentence_transformers import export_dynamic_quantized_onnx_model

    packages = ["sentence-transformers", "optimum", "optimum-onnx", "onnxruntime", "transformers"]
    model, int8 = _float_model_and_int8_folder(model_dir, out, "onnx", packages, pooling, f"st-onnx-qint8-{preset}")
    export_dynamic_quantized_onnx_model(model, preset, str(int8))
    write_manifest(int8, ST_TOOLS["onnx"], packages,
                   {"backend": "onnx", "quantizer": f"export_dynamic_quantized_onnx_model(model, '{preset}')"},
                   int8 / "onnx" / f"model_qint8_{preset}.onnx", pooling)


def sentence_transformers_openvino(model_dir: Path, out: Path, texts: list[str], pooling: dict[str, Any]) -> None:
    """sentence-transformers' OpenVINO backend, and static int8 the way export_static_quantized_openvino_model
    makes it (OVQuantizer, default OVQuantizationConfig, 300 texts padded to 384 tokens), calibrated on local texts:
    the helper itself downloads GLUE SST-2, and this machine is offline."""
    from optimum.intel import OVConfig, OVQuantizationConfig, OVQuantizer

    packages = ["sentence-transformers", "optimum-intel", "openvino", "nncf", "transformers"]
    model, int8 = _float_model_and_int8_folder(model_dir, out, "openvino", packages, pooling,
                                               "st-openvino-qint8-static")
    config = OVQuantizationConfig()
    calibration = [dict(model.tokenizer(text, padding="max_length", max_length=384, truncation=True))
                   for text in texts[: config.num_samples or 300]]
    scratch = int8 / "quantized"
    OVQuantizer.from_pretrained(model[0].auto_model).quantize(
        calibration, save_directory=str(scratch), ov_config=OVConfig(quantization_config=config))
    produced = next(scratch.rglob("openvino_model.xml"))  # the wrapped model saves into a subfolder of its own
    target = int8 / "openvino" / "openvino_model_qint8_quantized.xml"  # where the helper puts it
    produced.rename(target)
    produced.with_suffix(".bin").rename(target.with_suffix(".bin"))
    shutil.rmtree(scratch)
    write_manifest(int8, ST_TOOLS["openvino"], packages,
                   {"backend": "openvino", "quantizer": "export_static_quantized_openvino_model's recipe: "
                    "OVQuantizer + OVQuantizationConfig() defaults", "calibration": f"{len(calibration)} local texts "
                    "padded to 384 tokens, NNCF's default subset of 128 of them for the statistics (the helper "
                    "calibrates on SST-2, a download, offline here)"},
                   target, pooling)


def main() -> None:
    model_dir, out, texts_file = (Path(a) for a in sys.argv[1:4])
    out.mkdir(parents=True, exist_ok=True)
    preset, pooling = cpu_preset(), pooling_of(model_dir)
    texts = [t for t in texts_file.read_text().splitlines() if t.strip()]
    optimum(model_dir, out, preset, texts, pooling)
    sentence_transformers_onnx(model_dir, out, preset, pooling)
    sentence_transformers_openvino(model_dir, out, texts, pooling)


if __name__ == "__main__":
    main()
