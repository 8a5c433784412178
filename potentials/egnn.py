"""E(n)-equivariant graph neural network (Satorras, Hoogeboom and Welling, ICML 2021) as an energy model.

Layer l (paper Eqs. 3-6), on a radius graph with edge vectors D_ij = r_j - r_i:

    m_ij      = phi_e(h_i, h_j, |D_ij|^2 / r_c^2) * u(d_ij)                (Eq. 3)
    Delta_i   = -(1/k) sum_j D_ij phi_x(m_ij) u(d_ij)                       (Eq. 4)
    h_i      <- h_i + phi_h(h_i, (1/k) sum_j m_ij)                          (Eqs. 5-6, residual)
    D_ij     <- D_ij + Delta_j - Delta_i

E = sum_i [phi_out(h_i) - phi_out(h_i^iso) + E_ref(Z_i)], where h^iso is the final feature of an
isolated atom of the same element, so an atom without neighbours has exactly its reference energy.
Two changes make it an energy model fit for MD: every message
is multiplied by the envelope u of the *input* distance d_ij, so the energy is smooth as atoms cross
the cutoff, and neighbour sums are divided by a fixed constant k (``avg_num_neighbors``) instead of
the neighbour count, whose jumps would make the energy discontinuous. Coordinate updates act on edge
vectors, which keeps them valid across periodic images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .graph import AtomGraph
from .base import require
from .invariant import InvariantNetwork, InvariantNetworkConfig
from .nn import mlp, scatter_sum


@dataclass(kw_only=True)
class EGNNConfig(InvariantNetworkConfig):
    """EGNN hyperparameters (see :class:`InvariantNetworkConfig` for the shared ones).

    Attributes:
        update_coords: apply the coordinate update of Eq. 4 between layers.
    """

    update_coords: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self, "update_coords", bool)


class EGCL(nn.Module):
    """One E(n)-equivariant convolution layer acting on node features and edge vectors."""

    def __init__(self, hidden: int, update_coords: bool) -> None:
        super().__init__()
        self.phi_e = mlp([2 * hidden + 1, hidden, hidden], final_activation=True)
        self.phi_h = mlp([2 * hidden, hidden, hidden])
        self.phi_x = mlp([hidden, hidden, 1], bias_last=False) if update_coords else None

    def forward(
        self, h: Tensor, vectors: Tensor, envelope: Tensor, edge_index: Tensor, cutoff: float, norm: float
    ) -> tuple[Tensor, Tensor]:
        i, j = edge_index
        d2 = vectors.square().sum(-1, keepdim=True) / cutoff**2  # [n_edges, 1]
        m = self.phi_e(torch.cat([h[i], h[j], d2], dim=-1)) * envelope[:, None]  # [n_edges, F]
        if self.phi_x is not None:
            delta = -scatter_sum(vectors * self.phi_x(m) * envelope[:, None], i, h.shape[0]) / norm  # [n_atoms, 3]
            vectors = vectors + delta[j] - delta[i]
        h = h + self.phi_h(torch.cat([h, scatter_sum(m, i, h.shape[0]) / norm], dim=-1))
        return h, vectors


class EGNN(InvariantNetwork):
    """EGNN energy model; forces and stress come from autograd through the calculator."""

    architecture = "egnn"
    Config = EGNNConfig

    def __init__(self, config: EGNNConfig) -> None:
        super().__init__(config, (EGCL(config.hidden, config.update_coords) for _ in range(config.layers)))

    def interact(self, h: Tensor, graph: AtomGraph, envelope: Tensor) -> Tensor:
        cfg = self.config
        vectors = graph.edge_vectors
        for layer in self.layers:
            h, vectors = layer(h, vectors, envelope, graph.edge_index, cfg.cutoff, cfg.avg_num_neighbors)
        return h
