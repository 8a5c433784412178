"""The EquiformerV2 model, in a conservative mode (the default) and a reference-compatible mode."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..base import Potential, PotentialConfig, require
from ..errors import ConfigError
from ..graph import AtomGraph
from ..radial import polynomial_envelope
from .blocks import EdgeContext, EdgeDegreeEmbedding, FeedForward, GraphAttention, TransformerBlock
from .layers import GaussianBasis
from .norms import NORMS, EquivariantNorm
from .so3 import CoefficientLayout, EdgeRotation, WignerD, edge_frames

MODES = ("conservative", "compatible")


@dataclass(kw_only=True)
class EquiformerV2Config(PotentialConfig):
    """EquiformerV2 hyperparameters; defaults are those of the OC20 31M model (L = 4, M = 2, 8 layers).

    Attributes:
        mode: ``conservative``: energy head only, forces and stress by autograd, a smooth envelope
            on every message, deterministic edge frames; ``compatible``: the reference's behaviour
            (direct force head, normalised outputs, hard ``max_neighbors`` cap, no envelope). In
            both modes the energy is a differentiable function of the edge vectors, frames included,
            so the stress (by autograd) is the strain derivative of the energy returned.
        num_layers, lmax, mmax: depth, highest degree and highest order kept in edge frames.
        sphere_channels: channels C of node features.
        attn_hidden_channels, num_heads, attn_alpha_channels, attn_value_channels: attention sizes.
        ffn_hidden_channels: hidden channels of the feed-forward grid MLP.
        norm_type: one of ``layer_norm_sh``, ``rms_norm_sh``, ``layer_norm``.
        grid_resolution: points per angle of the S2 grid.
        edge_channels: hidden width of radial networks and size of the element embeddings on edges.
        num_distance_basis: Gaussians on [0, cutoff] describing edge lengths.
        avg_num_nodes: divides the summed energy in compatible mode.
        avg_degree: divides the edge-degree embedding.
        energy_mean, energy_std, force_std: output normalisation in compatible mode,
            E = energy_std * E_model + energy_mean [eV], F = force_std * F_model [eV/Å]
            (force_std None: energy_std).
        envelope_exponent: p of the polynomial envelope (conservative mode).
        activation_checkpointing: when derivatives are taken, keep only each transformer block's
            input and recompute the block in the backward pass: about a quarter of the memory for
            20-50 % more time (for large systems or batches in conservative mode).
    """

    cutoff: float = 12.0
    elements: tuple[int, ...] = tuple(range(1, 90))
    mode: str = "conservative"
    num_layers: int = 8
    lmax: int = 4
    mmax: int = 2
    sphere_channels: int = 128
    attn_hidden_channels: int = 64
    num_heads: int = 8
    attn_alpha_channels: int = 64
    attn_value_channels: int = 16
    ffn_hidden_channels: int = 128
    norm_type: str = "layer_norm_sh"
    grid_resolution: int = 18
    edge_channels: int = 128
    num_distance_basis: int = 600
    avg_num_nodes: float = 77.81317
    avg_degree: float = 23.395238876342773
    energy_mean: float = 0.0
    energy_std: float = 1.0
    force_std: float | None = None
    envelope_exponent: int = 6
    activation_checkpointing: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.norm_type not in NORMS:
            raise ConfigError(f"norm_type must be one of {NORMS}, got {self.norm_type!r}")
        require(self, "num_layers", int, minimum=0)
        require(self, "lmax", int, minimum=1)
        require(self, "mmax", int, minimum=0, maximum=self.lmax)  # orders |m| <= mmax <= lmax
        for name in ("sphere_channels", "attn_hidden_channels", "num_heads", "attn_alpha_channels",
                     "attn_value_channels", "ffn_hidden_channels", "edge_channels"):
            require(self, name, int, minimum=1)
        # e3nn's S2 grid goes to the sphere and back for degrees up to lmax with an even
        # resolution of at least 2 (lmax + 1) points per angle
        require(self, "grid_resolution", int, minimum=2 * (self.lmax + 1))
        if self.grid_resolution % 2:
            raise ConfigError(f"EquiformerV2Config.grid_resolution must be even, got {self.grid_resolution}")
        require(self, "num_distance_basis", int, minimum=2)  # Gaussians spaced cutoff / (n - 1) apart
        require(self, "avg_num_nodes", float, minimum=0, inclusive=False)
        require(self, "avg_degree", float, minimum=0, inclusive=False)
        require(self, "energy_mean", float, unit="eV")
        require(self, "energy_std", float, minimum=0, inclusive=False, unit="eV")
        require(self, "force_std", float, minimum=0, inclusive=False, unit="eV/Å", optional=True)
        require(self, "envelope_exponent", int, minimum=1)
        require(self, "activation_checkpointing", bool)


class EquiformerV2(Potential):
    """EquiformerV2 (Liao et al., ICLR 2024): equivariant graph attention with eSCN SO(2) convolutions,
    attention re-normalisation, separable S2 activations and separable layer norms."""

    architecture = "equiformer_v2"
    Config = EquiformerV2Config

    def __init__(self, config: EquiformerV2Config) -> None:
        super().__init__(config)
        cfg = config
        self.direct_forces = cfg.mode == "compatible"
        self.layout = CoefficientLayout(cfg.lmax, cfg.mmax)
        n_species, channels = len(cfg.elements), cfg.sphere_channels
        radial_sizes = [cfg.num_distance_basis, cfg.edge_channels, cfg.edge_channels]
        self.wigner = WignerD(cfg.lmax)
        self.distance = GaussianBasis(cfg.cutoff, cfg.num_distance_basis)
        self.sphere_embedding = nn.Embedding(n_species, channels)
        self.edge_degree = EdgeDegreeEmbedding(self.layout, channels, n_species, radial_sizes, cfg.avg_degree)

        def attention(out_channels: int) -> GraphAttention:
            return GraphAttention(self.layout, channels, out_channels, n_species, radial_sizes,
                                  cfg.attn_hidden_channels, cfg.num_heads, cfg.attn_alpha_channels,
                                  cfg.attn_value_channels, cfg.grid_resolution)

        def feed_forward(out_channels: int) -> FeedForward:
            return FeedForward(cfg.lmax, channels, cfg.ffn_hidden_channels, out_channels, cfg.grid_resolution)

        self.blocks = nn.ModuleList(
            TransformerBlock(cfg.norm_type, self.layout, channels, attention(channels), feed_forward(channels))
            for _ in range(cfg.num_layers)
        )
        self.norm = EquivariantNorm(cfg.norm_type, cfg.lmax, channels)
        self.energy_head = feed_forward(1)
        self.force_head = attention(1) if self.direct_forces else None

    def forward(self, graph: AtomGraph) -> dict[str, Tensor]:
        cfg = self.config
        if cfg.mode == "conservative":
            return {"energies": self.relative_to_isolated(graph, lambda g: self._features_and_energy(g)[2])}
        edges, x, node_energy = self._features_and_energy(graph)
        n_per_system = torch.bincount(graph.batch, minlength=graph.n_systems).to(node_energy.dtype)
        energies = cfg.energy_std * node_energy / cfg.avg_num_nodes + cfg.energy_mean / n_per_system[graph.batch]
        energies = self.with_reference_energies(graph, energies)
        force_std = cfg.energy_std if cfg.force_std is None else cfg.force_std
        forces = force_std * self.force_head.vector(x, self.species(graph.numbers), edges)[:, :, 0]
        return {"energies": energies, "forces": forces}

    def _edges(self, graph: AtomGraph) -> EdgeContext:
        cfg = self.config
        # the frames stay in the autograd graph in both modes: the energy depends on the edge
        # directions through them, so stress (and conservative forces) need their derivative. (The
        # reference detaches its frames: the same values, but a stress that misses every angular term.)
        frames = edge_frames(graph.edge_vectors)
        if cfg.mode == "compatible":  # the reference uses no envelope
            weights = torch.ones_like(graph.edge_lengths)
        else:
            weights = polynomial_envelope(graph.edge_lengths, cfg.cutoff, cfg.envelope_exponent)
        rotation = EdgeRotation(self.wigner(frames), self.layout)
        return EdgeContext(graph.edge_index, self.distance(graph.edge_lengths), rotation, weights, graph.n_atoms)

    def _features_and_energy(self, graph: AtomGraph) -> tuple[EdgeContext, Tensor, Tensor]:
        """The edge context (frames, Wigner matrices: built once, reused by the force head), final node
        features ``(N, (L+1)^2, C)`` and per-node energy outputs ``(N,)``."""
        species = self.species(graph.numbers)
        edges = self._edges(graph)
        x = graph.edge_vectors.new_zeros((graph.n_atoms, self.layout.n_full, self.config.sphere_channels))
        x = torch.cat([self.sphere_embedding(species)[:, None], x[:, 1:]], dim=1)
        x = x + self.edge_degree(species, edges)
        checkpointed = self.config.activation_checkpointing and torch.is_grad_enabled()
        for block in self.blocks:
            if checkpointed:
                x = checkpoint(block, x, species, edges, use_reentrant=False)
            else:
                x = block(x, species, edges)
        x = self.norm(x)
        return edges, x, self.energy_head.scalar(x)[:, 0]
