"""Text datasets: sentences from a file or the builtin corpus, tokenized by a model folder's own tokenizer."""

from __future__ import annotations

import ast
import csv
import importlib.util
import json
import re
import sysconfig
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from tradeoff.config import SPLIT_FILES, DataSpec
from tradeoff.errors import DataError
from tradeoff.huggingface import load_tokenizer
from tradeoff.inputs import structured

TOPICS = 8  # the labelled corpus keeps the reference's largest topics: 54 to 255 paragraphs each


def _reference_paragraphs() -> list[tuple[str, str]]:
    """(topic, paragraph) for every paragraph of eight words or more of the Python Language Reference shipped with
    every Python (pydoc_data): real English prose of natural lengths, available offline."""
    from pydoc_data.topics import topics

    return [(key, text) for key in sorted(topics)
            for text in (" ".join(p.split()) for p in re.split(r"\n\s*\n", topics[key])) if len(text.split()) >= 8]


def python_reference() -> list[str]:
    return [text for _, text in _reference_paragraphs()]


def python_reference_topics() -> tuple[list[str], list[str]]:
    """The paragraphs of the reference's largest topics, each labelled by its topic ("compound", "types", ...): a
    text classification task that installs offline."""
    paragraphs = _reference_paragraphs()
    sizes = Counter(topic for topic, _ in paragraphs)
    kept = {topic for topic, _ in sizes.most_common(TOPICS)}
    chosen = [(topic, text) for topic, text in paragraphs if topic in kept]
    return [text for _, text in chosen], [topic for topic, _ in chosen]


# the packages whose docstrings join the standard library's in python_docstrings: installed with tradeoff
DOCSTRING_PACKAGES = ("numpy", "scipy", "sklearn", "torch", "transformers")


def _prose_paragraphs(docstring: str) -> Iterator[str]:
    """The paragraphs of a docstring that read as sentences: eight words or more, mostly words, no doctest."""
    for paragraph in re.split(r"\n\s*\n", docstring):
        words = paragraph.split()
        if len(words) >= 8 and ">>>" not in paragraph and \
                sum(word.strip(".,;:()'\"").isalpha() for word in words) >= 0.7 * len(words):
            yield " ".join(words)


def _docstrings(folder: Path) -> Iterator[str]:
    for path in sorted(folder.rglob("*.py")):
        if {"test", "tests", "testing", "idle_test", "site-packages"} & set(path.relative_to(folder).parts):
            continue
        try:
            tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                yield from _prose_paragraphs(ast.get_docstring(node) or "")


def python_docstrings() -> list[str]:
    """Every distinct prose paragraph of the docstrings of Python's standard library and of DOCSTRING_PACKAGES, in
    file order: about 70,000 paragraphs of technical English that install offline, enough unlabelled text to
    distill an encoder. The packages' part follows their installed versions, which every run records."""
    folders = [Path(sysconfig.get_paths()["stdlib"])]
    for name in DOCSTRING_PACKAGES:
        found = importlib.util.find_spec(name)
        if found is not None and found.submodule_search_locations:
            folders.append(Path(next(iter(found.submodule_search_locations))))
    return list(dict.fromkeys(paragraph for folder in folders for paragraph in _docstrings(folder)))


BUILTIN_CORPORA: dict[str, Callable[[], tuple[list[str], list[str] | None]]] = {
    "python_reference": lambda: (python_reference(), None), "python_reference_topics": python_reference_topics,
    "python_docstrings": lambda: (python_docstrings(), None)}


def _read_table(path: Path, spec: DataSpec) -> tuple[list[str], list[str] | None]:
    if path.suffix == ".jsonl":
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path} line {number} is not JSON: {exc.msg}",
                                    "write one object per line") from None
    else:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    if not rows:
        return [], None
    columns = list(rows[0])
    if spec.text_column not in columns:
        raise DataError(f"no '{spec.text_column}' column in {path}", f"set data.text_column to one of {columns}")
    if spec.target is not None and spec.target not in columns:
        raise DataError(f"no '{spec.target}' column in {path}", f"set data.target to one of {columns}")
    label_column = spec.target or ("label" if "label" in columns else None)
    labels = [str(row[label_column]) for row in rows] if label_column else None
    return [str(row[spec.text_column]) for row in rows], labels


def read_texts(spec: DataSpec) -> tuple[list[str], list[str] | None, list[int] | None]:
    """Texts, their labels (None when unlabelled) and, where the files are the splits, how many texts each split
    file holds: one text per line of a .txt, or a .csv/.jsonl column."""
    if spec.name is not None:
        if spec.name not in BUILTIN_CORPORA:
            raise DataError(f"unknown text corpus '{spec.name}'", f"choose one of {', '.join(BUILTIN_CORPORA)}")
        return *BUILTIN_CORPORA[spec.name](), None
    if spec.path is not None:
        return *_read_text_file(Path(spec.path), spec, "path"), None
    read = [_read_text_file(Path(getattr(spec, key)), spec, key) for key in SPLIT_FILES]
    if len({labels is None for _, labels in read}) > 1:
        raise DataError("some of data.train, val and test have labels and others have none",
                        "label every split file or none")
    texts = [text for split, _ in read for text in split]
    labels = None if read[0][1] is None else [label for _, split in read for label in split or []]
    return texts, labels, [len(split) for split, _ in read]


def _read_text_file(path: Path, spec: DataSpec, key: str) -> tuple[list[str], list[str] | None]:
    if not path.is_file():
        raise DataError(f"text file not found: {path}", f"check data.{key}")
    if path.suffix == ".txt":
        texts, labels = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()], None
        texts = [t for t in texts if t]
    elif path.suffix in (".csv", ".jsonl"):
        texts, labels = _read_table(path, spec)
    else:
        raise DataError(f"unsupported text file type '{path.suffix}'", "use .txt (one text per line), .csv or .jsonl")
    if not texts:
        raise DataError(f"{path} holds no text", "put one text per line (.txt) or one row per text (.csv, .jsonl)")
    return texts, labels


def encode_labels(labels: list[str]) -> np.ndarray:
    """Integer class ids: labels that are all integers keep their values, others are numbered in sorted order."""
    if all(re.fullmatch(r"-?\d+", label) for label in labels):
        return np.array([int(label) for label in labels], dtype=np.int64)
    classes = {name: index for index, name in enumerate(sorted(set(labels)))}
    return np.array([classes[label] for label in labels], dtype=np.int64)


def tokenize(texts: list[str], tokenizer_path: Path, max_length: int) -> tuple[np.ndarray, list[str]]:
    """Token ids and attention masks as one structured array, padded to the longest text (at most `max_length`
    tokens, never more than the model takes); the notes say what was truncated."""
    tokenizer = load_tokenizer(tokenizer_path)
    notes = []
    limit = getattr(tokenizer, "model_max_length", max_length)
    if max_length > limit:
        notes.append(f"data.max_length {max_length} is above the model's limit of {limit} tokens; using {limit}")
        max_length = limit
    lengths = np.array([len(ids) for ids in tokenizer(texts, truncation=False, verbose=False)["input_ids"]])
    longer = int(np.sum(lengths > max_length))
    if longer:
        notes.append(f"{longer} of {len(texts)} texts are longer than {max_length} tokens and were truncated "
                     "(raise data.max_length to keep more)")
    encoded = tokenizer(texts, truncation=True, max_length=max_length, padding="longest", return_tensors="np")
    arrays = {"input_ids": encoded["input_ids"].astype(np.int64),
              "attention_mask": encoded["attention_mask"].astype(np.int64)}
    return structured(arrays), notes
