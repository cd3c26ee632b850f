"""Loading an artifact that ModelHandle.save wrote: a torch one rebuilds its structure by replaying the recorded
structure steps through their passes, so this module (not model.py) is the one that knows the passes."""

from __future__ import annotations

import json
from pathlib import Path

from tradeoff.errors import ModelError
from tradeoff.model import ARTIFACT_META, ModelHandle, build_module, load_state, read_onnx, read_weights
from tradeoff.passes import build_pass


def load_artifact(directory: Path) -> ModelHandle:
    """Load what ModelHandle.save wrote; a torch artifact rebuilds its structure from factory and steps."""
    meta_path = directory / ARTIFACT_META
    if not meta_path.is_file():
        raise ModelError(f"{directory} is not a tradeoff artifact (no {ARTIFACT_META})", "point to a best/ folder")
    meta = json.loads(meta_path.read_text())
    artifact = directory / meta["artifact"]
    if meta["format"] == "onnx":
        return ModelHandle(onnx_bytes=read_onnx(artifact), runtime=meta.get("runtime"))
    if meta["factory"] is None:
        raise ModelError(f"{directory} holds a torch state dict made from an in-memory module, with no factory "
                         "to rebuild it", "build your module, then load_state_dict(read_weights(artifact))")
    module = build_module(meta["factory"]).eval()
    for structure in meta["structure_steps"]:
        module = build_pass(structure["step"]).restructure(module, structure["state"])
    module = load_state(module, read_weights(artifact, allow_pickle=False), str(artifact))
    return ModelHandle(module=module.eval(), factory=meta["factory"], structure_steps=tuple(meta["structure_steps"]),
                       runtime=meta.get("runtime"))
