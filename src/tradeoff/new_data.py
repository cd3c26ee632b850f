"""Inputs that come after a task's data was loaded, read as its data was: a .csv with the training columns (by name
where the data named them), an .npz with x, or texts for a text task; the target is optional throughout. The new data
a deployed model meets (`tradeoff monitor`), and the unlabelled inputs semi-supervised training learns from
(`data.unlabeled`)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tradeoff import text
from tradeoff.data import DataBundle, read_npz
from tradeoff.errors import DataError


@dataclass(frozen=True)
class NewData:
    path: Path
    x: np.ndarray  # model inputs, prepared as the splits were (the training standardization applied, texts tokenized)
    y: np.ndarray | None  # targets, where the file has them


def _numbers(rows: list[list[str]], path: Path) -> np.ndarray:
    try:
        return np.array([[cell if cell.strip() else "nan" for cell in row] for row in rows], dtype=np.float64)
    except ValueError as exc:  # an empty cell is a missing value, said as such below
        raise DataError(f"{path} has a non-numeric value: {exc}", "encode categories as numbers") from None


def _listed(names: list[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def _read_csv(path: Path, data: DataBundle) -> tuple[np.ndarray, np.ndarray | None]:
    """The input columns in the training order (by name where the run's data had names, else by position) and the
    target column where present."""
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if len(rows) < 2:
        raise DataError(f"{path} has no data rows", "add a header and at least one row")
    header, body = rows[0], rows[1:]
    target = data.spec.target or "target"
    inputs = [c for c in header if c != target]
    table = _numbers(body, path)
    y = table[:, header.index(target)] if target in header else None
    expected = list(data.feature_names) if data.feature_names is not None else None
    if expected is None:
        return table[:, [header.index(c) for c in inputs]], y
    missing = [c for c in expected if c not in inputs]
    extra = [c for c in inputs if c not in expected]
    if missing or extra:
        problems = ([f"lacks the training column(s) {_listed(missing)}"] if missing else []) + (
            [f"has column(s) {_listed(extra)} the training data did not"] if extra else [])
        raise DataError(f"{path} {' and '.join(problems)}",
                        f"write the {len(expected)} training columns by name (the target column '{target}' optional)")
    return table[:, [header.index(c) for c in expected]], y


def _read_texts(path: Path, data: DataBundle) -> tuple[np.ndarray, np.ndarray | None]:
    """Texts from a .txt (one a line), .csv or .jsonl, tokenized as the task's data was (its tokenizer, its length)."""
    spec = data.spec.model_copy(update={"path": path, "name": None})
    texts, labels, _ = text.read_texts(spec)
    tokens, _ = text.tokenize(texts, Path(spec.tokenizer), spec.max_length)  # type: ignore[arg-type]
    return tokens, None if labels is None else text.encode_labels(labels)


def _read_tabular(path: Path, data: DataBundle, given_as: str) -> tuple[np.ndarray, np.ndarray | None]:
    if path.suffix == ".csv":
        return _read_csv(path, data)
    if path.suffix == ".npz":
        return read_npz(path, targets_required=False)
    raise DataError(f"unsupported file type '{path.suffix}' for {given_as}",
                    "use .csv (the training columns) or .npz (x)")


def read_new_data(path: str | Path, data: DataBundle, given_as: str = "--data") -> NewData:
    """`path` read as inputs of the model trained on `data`, made into what the model reads; `given_as` names
    where the path was given, for the errors."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{given_as} file not found: {path}", f"give {given_as} a .csv or .npz (texts: .txt, .jsonl)")
    if data.spec.source == "text":
        x, y = _read_texts(path, data)
    else:
        raw, y = _read_tabular(path, data, given_as)
        values, expected = int(np.prod(raw.shape[1:])), int(np.prod(data.sample_shape))
        if values != expected:
            raise DataError(f"{path} has samples of {values} values, the run's data {expected} (shape "
                            f"{list(data.sample_shape)})", "write the same features the model was trained on")
        x = data.prepare(raw.reshape((len(raw), *data.sample_shape)))
        broken = int(np.sum(~np.isfinite(x.reshape(len(x), -1)).all(axis=1)))
        if broken:
            raise DataError(f"{path} has {broken} rows with missing or infinite values",
                            "drop or fill them: the model cannot read them either")
    return NewData(path, x, y)
