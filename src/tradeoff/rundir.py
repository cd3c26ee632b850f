"""The run directory's layout and its atomic writes: a reader never sees a half-written file."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

MANIFEST = "MANIFEST"  # "<sha256>  <path>" per file of an artifact folder, as sha256sum writes them


def write_atomic(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, default=str) + "\n")


def write_yaml(path: Path, obj: Any) -> None:
    write_atomic(path, yaml.safe_dump(obj, sort_keys=False))


def write_directory(final: Path, fill: Callable[[Path], None]) -> Path:
    """Fill a temporary sibling directory, add a MANIFEST of sha256 sums, then swap it into place."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
    try:
        fill(tmp)
        sums = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(tmp)}"
                for p in sorted(tmp.rglob("*")) if p.is_file()]
        (tmp / MANIFEST).write_text("\n".join(sums) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return final


class RunDir:
    """runs/<name>/: task.yaml, env.json, log.txt, study.db, trials/<n>/ (error.txt for a failed one), best/,
    report.json, report.html, and what the insight commands add; from `tradeoff train`: train_state.pt,
    model.safetensors, history.json, train.json and report.html; from `tradeoff tune`: study.db, model.safetensors,
    tune.json, tuned.yaml and report.html."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    task = property(lambda self: self.root / "task.yaml")
    env = property(lambda self: self.root / "env.json")
    log = property(lambda self: self.root / "log.txt")  # what the libraries printed
    study_db = property(lambda self: self.root / "study.db")
    best = property(lambda self: self.root / "best")
    report_json = property(lambda self: self.root / "report.json")
    report_html = property(lambda self: self.root / "report.html")
    # what `tradeoff train` writes: the state to resume from, the trained weights, the record of every epoch
    train_state = property(lambda self: self.root / "train_state.pt")
    weights = property(lambda self: self.root / "model.safetensors")
    history = property(lambda self: self.root / "history.json")
    train_json = property(lambda self: self.root / "train.json")
    # what `tradeoff tune` writes besides: the search's summary, and the task that carries its result on
    tune_json = property(lambda self: self.root / "tune.json")
    tuned_task = property(lambda self: self.root / "tuned.yaml")
    # what the insight commands add to a run: per-layer sensitivity, the surrogate rules and attributions, and each
    # check of new data (monitor/<timestamp>/monitor.json and monitor.html)
    sensitivity_json = property(lambda self: self.root / "sensitivity.json")
    sensitivity_html = property(lambda self: self.root / "sensitivity.html")
    explain_json = property(lambda self: self.root / "explain.json")
    explain_html = property(lambda self: self.root / "explain.html")
    monitor_dir = property(lambda self: self.root / "monitor")

    def storage_url(self) -> str:
        return f"sqlite:///{self.study_db.resolve()}"

    def trial(self, number: int) -> Path:
        return self.root / "trials" / str(number)

    def trial_error(self, number: int) -> Path:
        return self.trial(number) / "error.txt"
