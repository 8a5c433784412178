"""Feeding EquiformerV2 the edge frames a reference run drew (shared by the parity test and eqv2_reference.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from potentials.equiformer_v2 import model as model_module


@contextlib.contextmanager
def frames_from_reference(vectors: torch.Tensor, axes: torch.Tensor, tol: float = 1e-3) -> Iterator[None]:
    """Within the block, each edge's frame uses the second axis that the reference drew for the edge
    with the same vector (``vectors`` ``(E, 3)`` [Å], ``axes`` ``(E, 3)``)."""
    original = model_module.edge_frames

    def frames(edge_vectors: torch.Tensor) -> torch.Tensor:
        distance = torch.cdist(edge_vectors.detach().double(), vectors.double())
        best, index = distance.min(dim=1)
        if len(edge_vectors) and best.max() > tol:
            raise AssertionError(f"an edge has no counterpart in the reference graph (off by {best.max():.2e} Å)")
        return original(edge_vectors, axes[index].to(edge_vectors))

    model_module.edge_frames = frames
    try:
        yield
    finally:
        model_module.edge_frames = original
