"""The environment record: versions, CPU and its int8/bf16 instructions, threads. Users paste it in bug reports."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from pathlib import Path
from typing import Any

INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16", "f16c")
PACKAGES = ("torch", "onnx", "onnxruntime", "onnxscript", "optuna", "numpy", "pydantic", "scikit-learn")


def _cpuinfo() -> tuple[str, set[str]]:
    path = Path("/proc/cpuinfo")
    if not path.exists():
        return platform.processor() or platform.machine(), set()
    model, flags = platform.machine(), set[str]()
    for line in path.read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model == platform.machine():
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return model, flags


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect_env(threads: int | None = None) -> dict[str, Any]:
    import onnxruntime
    import torch

    model, flags = _cpuinfo()
    return {
        "tradeoff": _version("tradeoff"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {p: _version(p) for p in PACKAGES},
        "cpu": {
            "model": model,
            "cores": os.cpu_count(),
            "flags": {f: f in flags for f in CPU_FLAGS},
            "torch_capability": torch.backends.cpu.get_cpu_capability(),
            "fast_int8": any(f in flags for f in INT8_FLAGS),
        },
        "threads": threads,
        "onnxruntime_providers": onnxruntime.get_available_providers(),
        "cuda": torch.cuda.is_available(),
        "command": sys.argv,
    }


def int8_warning(env: dict[str, Any]) -> str | None:
    if env["cpu"]["fast_int8"]:
        return None
    return (f"this CPU ({env['cpu']['model']}) has none of {', '.join(INT8_FLAGS)}: int8 kernels may run slower "
            "than float32 and lose accuracy (reduced-range weights); trust only the measured latency of int8 "
            "candidates on this machine")
