"""SAKE: spatial attention kinetic networks (Wang and Chodera, ICLR 2023), on a sparse radius graph.

One layer, with edge vectors D_ij = r_j - r_i, d_ij = |D_ij|, r̂_ij = D_ij / d_ij and the smooth
envelope u_ij = u(d_ij^0) of the input distance:

    e_ij   = MLP_e([h_j, h_i, (W [h_j, h_i]) * phi(d_ij), d_ij]) u_ij     edge embedding (Eq. 7)
    λ_ij^k = u_ij exp(s_ij^k) / sum_j' u_ij' exp(s_ij'^k),                semantic attention with
             s_ij^k = CELU_2(w_k . e_ij + b_k)                            a cutoff (Eqs. 9-10)
    ẽ_ij   = vec(e_ij ⊗ λ_ij)                                             (F * H channels)
    c_ij   = f(n_i ẽ_ij) u_ij,  n_i = sum_j u_ij,  f = tanh ∘ W           edge-vector coefficients
    U_i    = (1/√k) sum_j c_ij ⊗ r̂_ij,  z_i = MLP_s(|U_i|^2)             spatial attention (Eq. 6)
    h_i   <- h_i + MLP_h([h_i, sum_j ẽ_ij, z_i])                          node update (Eq. 4)
    v_i   <- 2 σ(MLP_v(h_i)) v_i + (1/k) sum_j (w . c_ij) r̂_ij            velocity (Eq. 12)
    x_i   <- x_i + v_i                                                    position (Eq. 13)

E = sum_i [MLP_out(h_i) - MLP_out(h_i^iso) + E_ref(Z_i)]. Where the reference averages over all
atoms (dense attention) this version sums over the neighbours in the cutoff and divides by a
constant k (``avg_num_neighbors``), and every edge term carries the envelope, so the energy is
smooth as atoms cross the cutoff and extensive in periodic systems.

Scale at initialisation. Three choices keep the spatial path (Eqs. 6 and 12) alive in an untrained
model, so that an ablation of it, or of the coefficient map f, starts from a path that carries a
share of the energy and forces. Measured with the default hyperparameters at 5 Å, seeds 0-7, as the
relative change of the per-atom energies and of the forces when c_ij is set to zero: 5e-2-0.3 and
0.4-2 on ethanol, 2e-3-5e-2 and 7e-2-0.6 on α-quartz, where they were 5e-5-2e-3 and 3e-3-6e-2,
8e-6-6e-5 and 2e-4-2e-3 before; ``coefficients="linear"`` instead of tanh now changes the per-atom
energies by 2e-2-0.3 (ethanol) and 2e-3-1e-2 (quartz), where it changed them by 1e-10-2e-7
(``tests/test_sake.py`` tests every switch and both shares against thresholds). The three choices:

- Every linear map is initialised as the reference's (yuanqing-wang/sake@0a25409,
  ``sake/layers.py``, ``sake/models.py``: ``flax.linen.Dense`` throughout), whose defaults are
  LeCun-normal weights, Var = 1/fan_in (LeCun et al., "Efficient BackProp", 1998), truncated at two
  standard deviations, and zero biases. torch's ``nn.Linear`` default draws Var = 1/(3 fan_in) and
  random biases, so each of the four maps between h and U (edge filter, the two of MLP_e, W) shrank
  the signal by a further factor of about √3.
- The coefficient map sees the attended features times the smooth neighbour count n_i: n_i λ_ij is
  the attention paid to edge ij relative to the mean attention over i's neighbourhood (exactly u_ij
  for uniform attention). The reference applies ``x_mixing`` (tanh ∘ Dense) to e_ij ⊗ λ_ij itself;
  as λ is a convex combination over the neighbours (``combined_attention /
  combined_attention.sum(axis=-2)``), that input is about e_ij / n_i, so at any real coordination f
  only sees arguments of order 0.01-0.1 (measured with LeCun initialisation alone: rms 0.05-0.08 on
  ethanol, 0.01 on diamond), where tanh, the linear map and the polynomial nearly coincide, and c_ij,
  hence U_i and the velocity kick, are of order 1/n_i. With the count, f's argument has the scale of
  e_ij at any coordination; n_i is smooth (u and its first two derivatives vanish at the cutoff), so
  the energy stays smooth.
- U_i is the neighbour sum divided by √k, not by k (the reference's ``combinations.mean``): its ~k
  terms are of random sign at initialisation, so the sum grows like √k and dividing by √k keeps
  |U_i|^2, the input of MLP_s, of order |c|^2 whatever the neighbour count (the normalisation NequIP
  gives its neighbour sums, Batzner et al., Nat. Commun. 13, 2453 (2022); mir-group/nequip,
  ``nequip/nn/_interaction_block.py``: ``x.div(avg_num_neigh**0.5)``); a mean makes it of order
  |c|^2 / k. The velocity kick keeps the mean: it is a displacement [Å], and the mean of O(1)
  coefficients times unit vectors moves atoms by 0.005-0.2 Å per layer (measured: 0.03-0.19 Å in
  ethanol, 0.005-0.03 Å in quartz, whose nearly symmetric environments cancel most of it).

Ablation switches (each keeps the energy E(3)-invariant):

- ``coefficients``: the map f from n_i ẽ_ij to the coefficients of the edge-vector combination:
  ``neural`` (tanh of a linear map, the paper's), ``linear`` (the linear map alone),
  ``polynomial`` (sum_p a_p t^p of the linear map t, p = 1..degree), ``mlp`` (a two-hidden-layer SiLU
  network);
- ``update``: ``velocity`` (Eqs. 12-13), ``no_velocity`` (x_i <- x_i + Δv_i: positions move by the
  spatial term alone, with no velocity memory or gate), ``frozen`` (positions never move);
- ``spatial_attention``: off removes z_i and, with it, every position update (paper Table 7);
- ``semantic_attention``: off gives uniform weights over neighbours (λ_ij = u_ij / sum_j' u_ij').
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional

from .base import require
from .errors import ConfigError
from .graph import AtomGraph
from .invariant import InvariantNetwork, InvariantNetworkConfig
from .nn import mlp, scatter_sum, segment_softmax
from .radial import ExpNormalBasis

COEFFICIENTS = ("neural", "linear", "polynomial", "mlp")
UPDATES = ("velocity", "no_velocity", "frozen")
#: standard deviation of a unit normal truncated to [-2, 2] (jax.nn.initializers.variance_scaling)
TRUNCATED_NORMAL_STD = 0.87962566103423978


@dataclass(kw_only=True)
class SAKEConfig(InvariantNetworkConfig):
    """SAKE hyperparameters (defaults follow the paper's MD17 runs: F = 64, 4 heads, 50 basis
    functions); ``hidden`` (F), ``layers``, ``avg_num_neighbors`` (k) and ``envelope_exponent`` are
    described in :class:`InvariantNetworkConfig`.

    Attributes:
        heads: attention heads H; spatial attention has F * H channels.
        num_rbf: size K of the ExpNormal radial basis.
        coefficients: ``neural``, ``linear``, ``polynomial`` or ``mlp`` (see module docstring).
        polynomial_degree: highest power for ``polynomial`` coefficients.
        update: ``velocity``, ``no_velocity`` or ``frozen``.
        spatial_attention: use spatial attention (Eq. 6).
        semantic_attention: use semantic attention (Eqs. 9-10); otherwise uniform weights.
    """

    heads: int = 4
    num_rbf: int = 50
    coefficients: str = "neural"
    polynomial_degree: int = 3
    update: str = "velocity"
    spatial_attention: bool = True
    semantic_attention: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.coefficients not in COEFFICIENTS:
            raise ConfigError(f"coefficients must be one of {COEFFICIENTS}, got {self.coefficients!r}")
        if self.update not in UPDATES:
            raise ConfigError(f"update must be one of {UPDATES}, got {self.update!r}")
        for name in ("heads", "num_rbf", "polynomial_degree"):
            require(self, name, int, minimum=1)
        require(self, "spatial_attention", bool)
        require(self, "semantic_attention", bool)


def lecun_normal_(module: nn.Module) -> None:
    """Initialise every ``nn.Linear`` in ``module`` as ``flax.linen.Dense`` does by default: weights
    from a normal of variance 1/fan_in truncated at two standard deviations (``lecun_normal``, the
    standard deviation corrected for the truncation), biases zero."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            std = 1 / math.sqrt(layer.in_features) / TRUNCATED_NORMAL_STD
            nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


class EdgeCoefficients(nn.Module):
    """The map f: attention-weighted edge features ``(n_edges, C)`` -> coefficients ``(n_edges, C)``."""

    def __init__(self, kind: str, channels: int, hidden: int, degree: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "mlp":
            self.net = mlp([channels, hidden, hidden, channels], bias_last=False)
        else:
            self.net = nn.Linear(channels, channels, bias=False)
        if kind == "polynomial":  # a_p initialised to 1/p!, the Taylor coefficients of exp(t) - 1
            powers = torch.arange(1, degree + 1, dtype=torch.get_default_dtype())
            self.powers = nn.Parameter(1 / torch.exp(torch.lgamma(powers + 1))[:, None].repeat(1, channels))

    def forward(self, features: Tensor) -> Tensor:
        t = self.net(features)
        if self.kind == "neural":
            return torch.tanh(t)
        if self.kind == "polynomial":
            return sum(a * t ** (p + 1) for p, a in enumerate(self.powers))
        return t


class SAKELayer(nn.Module):
    """One SAKE layer acting on node features, edge vectors and fictitious velocities."""

    def __init__(self, cfg: SAKEConfig) -> None:
        super().__init__()
        f, h, k = cfg.hidden, cfg.heads, cfg.num_rbf
        channels = f * h
        self.cfg = cfg
        self.rbf = ExpNormalBasis(k, cfg.cutoff)
        self.filter = nn.Linear(2 * f, k)
        self.edge_mlp = mlp([2 * f + k + 1, f, f])
        self.attention = nn.Linear(f, h) if cfg.semantic_attention else None
        spatial = cfg.spatial_attention
        self.coefficients = EdgeCoefficients(cfg.coefficients, channels, f, cfg.polynomial_degree) if spatial else None
        self.spatial_mlp = mlp([channels, f, f], final_activation=True) if spatial else None
        self.node_mlp = mlp([f + channels + (f if spatial else 0), f, f], final_activation=True)
        moves = spatial and cfg.update != "frozen"
        self.velocity_mix = nn.Linear(channels, 1, bias=False) if moves else None
        self.velocity_gate = mlp([f, f, 1], bias_last=False) if moves and cfg.update == "velocity" else None

    def forward(
        self, h: Tensor, vectors: Tensor, velocity: Tensor, envelope: Tensor, edge_index: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One layer.

        Args:
            h: ``(n_atoms, F)`` node features.
            vectors: ``(n_edges, 3)`` current edge vectors D_ij [Å].
            velocity: ``(n_atoms, 3)`` fictitious velocities [Å per layer].
            envelope: ``(n_edges,)`` u_ij of the input distances.
            edge_index: ``(2, n_edges)`` centres i and neighbours j.

        Returns:
            Updated ``(h, vectors, velocity)``, shaped as the inputs.
        """
        i, j = edge_index
        n, n_edges = h.shape[0], vectors.shape[0]
        norm = self.cfg.avg_num_neighbors
        d = torch.linalg.vector_norm(vectors, dim=-1)  # [n_edges]
        pair = torch.cat([h[j], h[i]], dim=-1)  # [n_edges, 2F]
        e = self.edge_mlp(torch.cat([pair, self.filter(pair) * self.rbf(d), d[:, None]], dim=-1)) * envelope[:, None]
        if self.attention is not None:
            scores = functional.celu(self.attention(e), alpha=2.0)  # [n_edges, H]
        else:
            scores = e.new_zeros((n_edges, self.cfg.heads))
        weights = segment_softmax(scores, envelope, i, n)  # [n_edges, H]
        attended = (e[:, :, None] * weights[:, None, :]).reshape(n_edges, e.shape[1] * weights.shape[1])  # feature-major
        parts = [h, scatter_sum(attended, i, n)]
        if self.coefficients is not None:
            count = scatter_sum(envelope, i, n)  # smooth neighbour count n_i [n_atoms]
            coeff = self.coefficients(attended * count[i, None]) * envelope[:, None]  # [n_edges, C]
            unit = vectors / d[:, None]
            combination = scatter_sum(coeff[:, :, None] * unit[:, None, :], i, n) / math.sqrt(norm)  # [n_atoms, C, 3]
            parts.append(self.spatial_mlp(combination.square().sum(-1)))
        h = h + self.node_mlp(torch.cat(parts, dim=-1))
        if self.velocity_mix is not None:
            kick = scatter_sum(self.velocity_mix(coeff) * unit, i, n) / norm  # [n_atoms, 3]
            if self.velocity_gate is not None:
                velocity = 2 * torch.sigmoid(self.velocity_gate(h)) * velocity + kick
            else:
                velocity = kick
            vectors = vectors + velocity[j] - velocity[i]
        return h, vectors, velocity


class SAKE(InvariantNetwork):
    """SAKE energy model; forces and stress come from autograd through the calculator.

    Every linear map, the readout's included, starts LeCun-normal with zero biases (see the module
    docstring); the element embedding keeps unit-variance rows.
    """

    architecture = "sake"
    Config = SAKEConfig

    def __init__(self, config: SAKEConfig) -> None:
        super().__init__(config, (SAKELayer(config) for _ in range(config.layers)))
        lecun_normal_(self)

    def interact(self, h: Tensor, graph: AtomGraph, envelope: Tensor) -> Tensor:
        vectors = graph.edge_vectors
        velocity = graph.edge_vectors.new_zeros((graph.n_atoms, 3))
        for layer in self.layers:
            h, vectors, velocity = layer(h, vectors, velocity, envelope, graph.edge_index)
        return h
