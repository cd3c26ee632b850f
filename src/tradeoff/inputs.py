"""Model inputs as numpy batches: a plain array for one input, or a structured array with one field per named
input (token ids, attention mask), so that splitting, batching and concatenating stay plain numpy whatever the
model takes, and every runtime feeds the same batch the same way."""

from __future__ import annotations

import numpy as np
import torch

from tradeoff.errors import RuntimeBackendError


def input_names(batch: np.ndarray) -> tuple[str, ...]:
    """The named inputs a structured batch carries, in the model's argument order; () for a single input."""
    return tuple(batch.dtype.names or ())


def as_arrays(batch: np.ndarray) -> tuple[np.ndarray, ...]:
    """Contiguous arrays in argument order (a structured array's fields are strided views).

    Token columns that no text in the batch uses (padding past the longest) are cut off: padding is compute,
    5x the time for short texts padded to 128, and masked positions do not change an encoder's output.
    """
    names = input_names(batch)
    if not names:
        return (np.ascontiguousarray(batch),)
    arrays = [batch[name] for name in names]
    if "attention_mask" in names and batch.size:
        used = np.flatnonzero(batch["attention_mask"].any(axis=0))
        length = int(used[-1]) + 1 if used.size else 1
        arrays = [array[:, :length] for array in arrays]
    return tuple(np.ascontiguousarray(array) for array in arrays)


def as_feeds(batch: np.ndarray, graph_inputs: list[str], float_type: type = np.float32) -> dict[str, np.ndarray]:
    """The batch keyed by a graph's input names: named fields by name, or the one input cast to `float_type`."""
    names = input_names(batch)
    if not names:
        return {graph_inputs[0]: np.ascontiguousarray(batch, dtype=float_type)}
    arrays = dict(zip(names, as_arrays(batch), strict=True))
    missing = [name for name in graph_inputs if name not in arrays]
    if missing:
        raise RuntimeBackendError(f"the model needs inputs {missing} that the data does not carry",
                                  f"the data carries {list(names)}")
    return {name: arrays[name] for name in graph_inputs}


def as_tensors(batch: np.ndarray) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(array) for array in as_arrays(batch))


def structured(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Pack same-length per-sample arrays (each (N, ...)) into one structured array of N samples."""
    count = len(next(iter(arrays.values())))
    dtype = np.dtype([(name, array.dtype, array.shape[1:]) for name, array in arrays.items()])
    packed = np.empty(count, dtype=dtype)
    for name, array in arrays.items():
        packed[name] = array
    return packed


def concatenate(batches: list[np.ndarray]) -> np.ndarray:
    """Batches one after another. Texts tokenized apart are padded to different lengths: each named input is padded
    with zeros to the longest, masked out (an attention mask's zeros) and so changing no encoder's output."""
    names = input_names(batches[0])
    if not names:
        return np.concatenate(batches)
    length = max(batch[name].shape[1] for batch in batches for name in names)
    return structured({name: np.concatenate([np.pad(batch[name], ((0, 0), (0, length - batch[name].shape[1])))
                                             for batch in batches]) for name in names})
