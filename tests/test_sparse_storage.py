"""Sparse storage round-trips exactly and makes mostly-zero tensors physically small."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from tradeoff import sparse_storage
from tradeoff.model import read_weights


def _round_trip(state: dict[str, torch.Tensor], path: Path) -> tuple[dict[str, torch.Tensor], int]:
    tensors, metadata = sparse_storage.encode(state)
    save_file(tensors, str(path), metadata=metadata)
    return read_weights(path, allow_pickle=False), path.stat().st_size


def test_sparse_floats_and_packed_indices_round_trip_exactly(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    weights = torch.randn(301, 97, generator=generator) * (torch.rand(301, 97, generator=generator) > 0.9)
    keep = torch.rand(257, 33, generator=generator) > 0.8
    indices = (torch.randint(1, 16, (257, 33), generator=generator) * keep).to(torch.uint8)
    state = {"w": weights, "idx": indices, "dense": torch.randn(64, 64, generator=generator), "tiny": torch.zeros(3)}
    decoded, size = _round_trip(state, tmp_path / "m.safetensors")
    for name, tensor in state.items():
        assert torch.equal(decoded[name], tensor), name
    assert size < 0.45 * sum(t.numel() * t.element_size() for t in state.values())


def test_a_pruned_layer_takes_a_mask_bit_plus_its_surviving_values(tmp_path: Path) -> None:
    weight = torch.randn(300, 784) * (torch.rand(300, 784) > 0.95)
    _, size = _round_trip({"w": weight}, tmp_path / "m.safetensors")
    assert size < weight.numel() * (1 + 0.06 * 32) / 8 + 1024
