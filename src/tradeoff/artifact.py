"""Loading an artifact that ModelHandle.save wrote: a torch one rebuilds its structure by replaying the recorded
structure steps through their passes, so this module (not model.py) is the one that knows the passes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tradeoff.errors import ModelError
from tradeoff.model import ARTIFACT_META, ModelHandle, build_module, load_state, read_onnx, read_weights
from tradeoff.passes import build_pass
from tradeoff.rundir import MANIFEST


def load_artifact(directory: Path, search_dirs: tuple[Path, ...] = ()) -> ModelHandle:
    """Load what ModelHandle.save wrote, checked against its MANIFEST where it has one (a best/ folder always
    does); a torch artifact rebuilds its structure from factory (imported from `search_dirs` first) and steps."""
    meta_path = directory / ARTIFACT_META
    if not meta_path.is_file():
        raise ModelError(f"{directory} is not a tradeoff artifact (no {ARTIFACT_META})", "point to a best/ folder")
    if (directory / MANIFEST).is_file():
        verify_manifest(directory)
    meta = json.loads(meta_path.read_text())
    artifact = directory / meta["artifact"]
    if meta["format"] == "onnx":
        return ModelHandle(onnx_bytes=read_onnx(artifact), runtime=meta.get("runtime"),
                           threads=meta.get("threads"))
    if meta["factory"] is None:
        raise ModelError(f"{directory} holds a torch state dict made from an in-memory module, with no factory "
                         "to rebuild it", "build your module, then load_state_dict(read_weights(artifact))")
    options = meta.get("factory_options") or {}
    module = build_module(meta["factory"], search_dirs, options).eval()
    for structure in meta["structure_steps"]:
        module = build_pass(structure["step"]).restructure(module, structure["state"])
    module = load_state(module, read_weights(artifact, allow_pickle=False), str(artifact))
    return ModelHandle(module=module.eval(), factory=meta["factory"], factory_options=options,
                       structure_steps=tuple(meta["structure_steps"]), runtime=meta.get("runtime"),
                       threads=meta.get("threads"))


def verify_manifest(directory: Path) -> None:
    """Refuse a folder whose files are not exactly those its MANIFEST lists, with the sums it lists: a file
    changed, lost or added since tradeoff wrote it is not the artifact that was measured."""
    listed: dict[str, str] = {}
    for line in (directory / MANIFEST).read_text().splitlines():
        digest, separator, name = line.partition("  ")
        if not separator or not name:
            raise ModelError(f"{directory / MANIFEST} has a malformed line {line!r}", "write the artifact again")
        listed[name] = digest
    present = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()} - {MANIFEST}
    fix = "use the folder as tradeoff wrote it, or write it again (tradeoff apply)"
    if missing := sorted(listed.keys() - present):
        raise ModelError(f"{directory / missing[0]} is listed in MANIFEST but missing", fix)
    if extra := sorted(present - listed.keys()):
        raise ModelError(f"{directory / extra[0]} is not listed in MANIFEST", f"remove it, or {fix}")
    for name in sorted(listed):
        if hashlib.sha256((directory / name).read_bytes()).hexdigest() != listed[name]:
            raise ModelError(f"{directory / name} does not match its sha256 in MANIFEST: changed since it was written",
                             fix)
