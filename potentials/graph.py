"""The batched graph every model consumes.

Conventions (ASE's, stated once here):

- the cell's *rows* are the lattice vectors, in Å;
- an edge ``e`` joins a centre atom ``i = edge_index[0, e]`` to a neighbour ``j = edge_index[1, e]``
  seen through the integer cell shift ``S = shifts[e]``, and its vector is
  ``D = r_j - r_i + S @ cell`` (ASE's ``neighbor_list("D")``);
- graphs are full (both ``i -> j`` and ``j -> i`` are present), atoms of one system are contiguous,
  and ``batch`` is sorted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .nn import scatter_sum


@dataclass
class AtomGraph:
    """A batch of atomic systems with their radius graph.

    Edge vectors and lengths are computed from ``positions``, ``cell`` and ``shifts`` at
    construction, so they carry gradients with respect to positions and cell (forces, stress).

    Attributes:
        positions: ``(n_atoms, 3)`` Cartesian positions [Å].
        numbers: ``(n_atoms,)`` atomic numbers (int64).
        cell: ``(n_systems, 3, 3)`` lattice vectors as rows [Å]; zeros where a system has none.
        pbc: ``(n_systems, 3)`` periodicity per axis (bool).
        batch: ``(n_atoms,)`` index of the system each atom belongs to (int64, sorted).
        edge_index: ``(2, n_edges)`` centre ``i`` (row 0) and neighbour ``j`` (row 1) (int64).
        shifts: ``(n_edges, 3)`` integer cell shifts ``S`` of the neighbour, stored in the
            positions' dtype so they multiply the cell directly.
        dtype: the network's floating-point type, that of the edge vectors and lengths (default:
            the positions'). Positions and cell may be held in float64 for a float32 network: edge
            vectors are then computed in float64 and rounded once, so they are accurate to float32
            relative to their own length, not to the size of the coordinates (tens of Å in a slab).
        edge_vectors: ``(n_edges, 3)`` ``r_j - r_i + S @ cell`` [Å] (derived).
        edge_lengths: ``(n_edges,)`` norms of ``edge_vectors`` [Å] (derived).
    """

    positions: Tensor
    numbers: Tensor
    cell: Tensor
    pbc: Tensor
    batch: Tensor
    edge_index: Tensor
    shifts: Tensor
    dtype: torch.dtype | None = None
    edge_vectors: Tensor = field(init=False)
    edge_lengths: Tensor = field(init=False)

    def __post_init__(self) -> None:
        i, j = self.edge_index
        offsets = torch.einsum("ea,eab->eb", self.shifts, self.cell[self.batch[i]])  # [n_edges, 3]
        vectors = self.positions[j] - self.positions[i] + offsets
        self.dtype = self.dtype or self.positions.dtype
        self.edge_vectors = vectors.to(self.dtype)
        self.edge_lengths = torch.linalg.vector_norm(vectors, dim=-1).to(self.dtype)

    @property
    def n_atoms(self) -> int:
        return self.positions.shape[0]

    @property
    def n_systems(self) -> int:
        return self.cell.shape[0]

    @property
    def n_edges(self) -> int:
        return self.edge_index.shape[1]

    def system_sum(self, per_atom: Tensor) -> Tensor:
        """Sum a per-atom quantity ``(n_atoms, ...)`` into ``(n_systems, ...)``."""
        return scatter_sum(per_atom, self.batch, self.n_systems)
