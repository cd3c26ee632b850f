"""best/ used by an application: `to.load(best)` is a `Predictor` that takes what the original model took, raw rows
or texts, and runs the artifact on the runtime and threads the search measured it on, with no task file and no
training data. What it needs besides the artifact is written into best/ at optimize time and listed in its MANIFEST:
predictor.json (inputs, standardization, threads, import folders) and, for a text model, tokenizer/."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from tradeoff.artifact import load_artifact
from tradeoff.data import DataBundle, Split
from tradeoff.errors import DataError, ModelError
from tradeoff.evaluation import predict as predict_split
from tradeoff.huggingface import load_tokenizer
from tradeoff.inputs import structured
from tradeoff.runtimes import runtime_for

PREDICTOR_FILE = "predictor.json"
TOKENIZER_DIR = "tokenizer"
CARD_FILE = "README.md"


class ServingSpec(BaseModel):
    """predictor.json: what the model reads and how the search ran it, so that best/ runs without the task."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = 1
    inputs: Literal["array", "text"]
    shape: list[int]  # one sample as the model reads it ([] for texts: token ids and mask of any length)
    threads: int  # what the model card's latencies were measured with: the task's, or fewer where those ran faster
    feature_names: list[str] | None = None  # a .csv's input columns, in order
    mean: list[Any] | None = None  # the training split's standardization (nested lists of `shape`), if the task asked
    std: list[Any] | None = None
    max_length: int | None = None  # tokens per text, as the splits were tokenized
    import_dirs: list[str] = []  # where a torch artifact's factory is imported from


def serving_spec(data: DataBundle, threads: int, search_dirs: tuple[Path, ...]) -> ServingSpec:
    """What the run's data says about the model's inputs (read at optimize time: best/ is used without it)."""
    dirs = [str(d) for d in search_dirs]
    if data.spec.source == "text":
        limit = getattr(load_tokenizer(Path(data.spec.tokenizer)), "model_max_length", data.spec.max_length)  # type: ignore[arg-type]
        return ServingSpec(inputs="text", shape=[], threads=threads, max_length=min(data.spec.max_length, limit),
                           import_dirs=dirs)
    mean, std = data.standardization or (None, None)
    return ServingSpec(inputs="array", shape=list(data.sample_shape), threads=threads,
                       feature_names=list(data.feature_names) if data.feature_names else None,
                       mean=None if mean is None else mean.tolist(), std=None if std is None else std.tolist(),
                       import_dirs=dirs)


@dataclass(frozen=True)
class Shipping:
    """What optimize and apply add to the artifact they save: the serving spec, the tokenizer's folder for a text
    model, and the model card (optimize's only: it needs the original measured on test beside the result)."""

    spec: ServingSpec
    tokenizer: Path | None
    card: str | None = None

    @classmethod
    def of(cls, data: DataBundle, threads: int, search_dirs: tuple[Path, ...]) -> Shipping:
        """What the run's data and settings say; the card is optimize's to add."""
        tokenizer = Path(data.spec.tokenizer) if data.spec.source == "text" else None  # type: ignore[arg-type]
        return cls(serving_spec(data, threads, search_dirs), tokenizer)

    def write(self, directory: Path) -> None:
        (directory / PREDICTOR_FILE).write_text(self.spec.model_dump_json(indent=2))
        if self.tokenizer is not None:
            load_tokenizer(self.tokenizer).save_pretrained(str(directory / TOKENIZER_DIR))
        if self.card is not None:
            (directory / CARD_FILE).write_text(self.card)


class Predictor:
    """A best/ folder loaded once (checked against its MANIFEST) and run on the runtime the search chose."""

    def __init__(self, directory: Path, threads: int | None = None) -> None:
        recorded = _read_json(directory / PREDICTOR_FILE)
        dirs = tuple(Path(d) for d in recorded.get("import_dirs", [])) if isinstance(recorded, dict) else ()
        model = load_artifact(directory, dirs)  # the MANIFEST is checked here, before anything is trusted
        try:
            self.spec = ServingSpec.model_validate(recorded)
        except ValidationError:
            raise ModelError(f"{directory} holds an artifact without a valid {PREDICTOR_FILE} (saved by an older "
                             "tradeoff, or by ModelHandle.save), which says what inputs it takes",
                             "optimize again, or replay its recipe.yaml with tradeoff apply --out") from None
        runtime = runtime_for(model)
        self.directory, self.runtime, self.threads = directory, runtime.name, threads or self.spec.threads
        self._run = runtime.load(model, self.threads)
        self._tokenizer = load_tokenizer(directory / TOKENIZER_DIR) if self.spec.inputs == "text" else None
        standardization = (self.spec.mean, self.spec.std) if self.spec.mean is not None else None
        self._standardization = None if standardization is None else tuple(
            np.asarray(v, dtype=np.float32) for v in standardization)

    def __repr__(self) -> str:
        takes = "texts" if self.spec.inputs == "text" else self._shape_text()
        return f"Predictor({self.directory}, {self.runtime}, {self.threads} threads, takes {takes})"

    def predict(self, inputs: Any) -> np.ndarray:
        """The model's outputs (scores, or embeddings) for a batch: rows as the task's data held them (an array or a
        tensor, standardized here where the task was), or texts for a text model."""
        if self._tokenizer is not None:
            return self.encode(inputs)
        if _is_texts(inputs):
            raise DataError(f"this model takes numbers of shape {self._shape_text()}, not texts",
                            "pass a numpy array or torch tensor with one row per sample")
        return self._outputs(self._prepare(inputs))

    def encode(self, texts: str | Sequence[str]) -> np.ndarray:
        """A text model's outputs for `texts` (normalized sentence embeddings, or class scores), tokenized as the
        splits were."""
        if self._tokenizer is None:
            raise DataError(f"encode() takes texts, and this model takes numbers of shape {self._shape_text()}",
                            "call predict() with a numpy array or torch tensor")
        texts = [texts] if isinstance(texts, str) else texts
        if not _is_texts(texts):
            raise DataError(f"this model takes texts, got {type(texts).__name__}", "pass a list of strings")
        encoded = self._tokenizer(list(texts), truncation=True, max_length=self.spec.max_length, padding="longest",
                                  return_tensors="np")
        return self._outputs(structured({name: encoded[name].astype(np.int64)
                                         for name in ("input_ids", "attention_mask")}))

    def _outputs(self, x: np.ndarray) -> np.ndarray:
        return predict_split(self._run, Split(x, np.zeros(len(x))))  # in the batches the evaluation used

    def _prepare(self, inputs: Any) -> np.ndarray:
        try:
            x = np.asarray(inputs.detach().cpu().numpy() if hasattr(inputs, "detach") else inputs, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise DataError(f"predict() cannot read its inputs as numbers: {exc}",
                            f"pass a numpy array or torch tensor {self._shape_text()}") from None
        shape = tuple(self.spec.shape)
        if x.shape == shape:
            raise DataError(f"predict() got one sample of shape {list(x.shape)}; it takes a batch of shape "
                            f"{self._shape_text()}", "add the batch axis: x[None]")
        if x.ndim == 2 and len(shape) > 1 and x.shape[1] == int(np.prod(shape)):
            x = x.reshape((len(x), *shape))  # flat rows, as a .csv holds an image, shaped as the splits were
        if x.shape[1:] != shape:
            named = f" ({', '.join(self.spec.feature_names)})" if self.spec.feature_names else ""
            raise DataError(f"predict() got inputs of shape {list(x.shape)}; this model takes {self._shape_text()}",
                            f"pass {int(np.prod(shape))} values per sample{named}")
        if self._standardization is not None:
            mean, std = self._standardization
            x = ((x - mean) / std).astype(np.float32)
        return x

    def _shape_text(self) -> str:
        return f"(batch, {', '.join(str(n) for n in self.spec.shape)})"


def load(path: str | Path, threads: int | None = None) -> Predictor:
    """best/ (runs/<name>/best, or a folder `result.best.save` wrote) as a predictor; `threads` replaces the threads
    the run measured with."""
    directory = Path(path)
    if not directory.is_dir():
        raise ModelError(f"{directory} is not a folder", "point to runs/<name>/best")
    return Predictor(directory, threads)


def _read_json(path: Path) -> Any:
    """The file's JSON, or None where it is missing or unreadable (the MANIFEST check says why, when it was)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _is_texts(inputs: Any) -> bool:
    return isinstance(inputs, (list, tuple)) and len(inputs) > 0 and all(isinstance(t, str) for t in inputs)
