"""Sparse tensor storage inside safetensors: a bitmask of non-zeros plus the non-zero values.

safetensors has no sparse type, so a mostly-zero tensor is written as two dense ones (`name::mask`, packed
bits; `name::values`) and described in the file's metadata; small-integer values (cluster.weights' codebook
indices) are packed two to a byte. This is what makes pruning and weight sharing shrink the artifact itself,
not only its zstd-compressed size. Deep Compression's relative-index + Huffman coding is the same idea.
"""

from __future__ import annotations

import json

import numpy as np
import torch

METADATA_KEY = "tradeoff.sparse"
MIN_ELEMENTS = 1024
MIN_SPARSITY = 0.5


def _nibbles(values: np.ndarray) -> np.ndarray:
    padded = np.append(values, np.uint8(0)) if len(values) % 2 else values
    return (padded[0::2] << 4 | padded[1::2]).astype(np.uint8)


def _unnibble(packed: np.ndarray, count: int) -> np.ndarray:
    return np.stack([packed >> 4, packed & 0x0F], axis=1).reshape(-1)[:count]


def encode(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors to write and the metadata that says how to read them back."""
    tensors: dict[str, torch.Tensor] = {}
    described: dict[str, dict[str, object]] = {}
    for name, tensor in state.items():
        flat = tensor.detach().contiguous().reshape(-1).numpy()
        nonzero = flat != 0
        if flat.size < MIN_ELEMENTS or nonzero.mean() > 1 - MIN_SPARSITY:
            tensors[name] = tensor.contiguous()
            continue
        values = flat[nonzero]
        nibbles = values.dtype == np.uint8 and values.size > 0 and int(values.max()) < 16
        tensors[f"{name}::mask"] = torch.from_numpy(np.packbits(nonzero))
        tensors[f"{name}::values"] = torch.from_numpy(_nibbles(values) if nibbles else values.copy())
        described[name] = {"shape": list(tensor.shape), "count": int(values.size), "nibbles": bool(nibbles)}
    return tensors, ({METADATA_KEY: json.dumps(described)} if described else {})


def decode(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None) -> dict[str, torch.Tensor]:
    described = json.loads((metadata or {}).get(METADATA_KEY, "{}"))
    state = {k: v for k, v in tensors.items() if "::" not in k}
    for name, info in described.items():
        mask = np.unpackbits(tensors[f"{name}::mask"].numpy())[: int(np.prod(info["shape"]))].astype(bool)
        values = tensors[f"{name}::values"].numpy()
        if info["nibbles"]:
            values = _unnibble(values, info["count"])
        flat = np.zeros(mask.size, dtype=values.dtype)
        flat[mask] = values
        state[name] = torch.from_numpy(flat.reshape(info["shape"]))
    return state
