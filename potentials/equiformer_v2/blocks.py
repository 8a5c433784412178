"""The blocks of EquiformerV2: edge-degree embedding, equivariant graph attention, feed-forward, transformer block.

Node features are ``(N, (L+1)^2, C)`` in l-primary order; edge features in the edge frame are
``(E, N_red, C)`` in the reduced m-primary order of :class:`~.so3.CoefficientLayout`. An edge joins
centre i (``edge_index[0]``, which receives the message) and neighbour j (``edge_index[1]``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..nn import scatter_sum, segment_softmax
from .layers import RadialMLP, S2Grid, SO3Linear, smooth_leaky_relu
from .norms import EquivariantNorm
from .so2_conv import SO2Convolution
from .so3 import CoefficientLayout, EdgeRotation


class EdgeContext:
    """What every block needs to know about the edges for one forward pass.

    Attributes:
        edge_index: ``(2, E)`` centre i and neighbour j.
        distance_features: ``(E, n_basis)`` radial basis of the edge lengths.
        rotation: the edge-frame rotations.
        weights: ``(E,)`` envelope multiplying every message (ones when there is none).
        n_nodes: number of nodes.
    """

    def __init__(
        self, edge_index: Tensor, distance_features: Tensor, rotation: EdgeRotation, weights: Tensor, n_nodes: int
    ) -> None:
        self.edge_index, self.distance_features = edge_index, distance_features
        self.rotation, self.weights, self.n_nodes = rotation, weights, n_nodes


class EdgeFeatures(nn.Module):
    """Invariant edge features [radial basis, embedding(Z_j), embedding(Z_i)] ``(E, n_basis + 2 e)``."""

    def __init__(self, n_species: int, channels: int) -> None:
        super().__init__()
        self.source_embedding = nn.Embedding(n_species, channels)
        self.target_embedding = nn.Embedding(n_species, channels)

    def forward(self, species: Tensor, edges: EdgeContext) -> Tensor:
        i, j = edges.edge_index
        return torch.cat([edges.distance_features, self.source_embedding(species[j]), self.target_embedding(species[i])], 1)


class EdgeDegreeEmbedding(nn.Module):
    """Initial equivariant features from the neighbour distribution: for each edge, m = 0 coefficients
    from a radial network, rotated back from the edge frame and summed over neighbours / avg_degree."""

    def __init__(self, layout: CoefficientLayout, channels: int, n_species: int, radial_sizes: list[int],
                 avg_degree: float) -> None:
        super().__init__()
        self.layout, self.channels, self.avg_degree = layout, channels, avg_degree
        self.edge_features = EdgeFeatures(n_species, radial_sizes[1])
        self.radial = RadialMLP([radial_sizes[0] + 2 * radial_sizes[1], *radial_sizes[1:], (layout.lmax + 1) * channels])

    def forward(self, species: Tensor, edges: EdgeContext) -> Tensor:
        m0 = self.radial(self.edge_features(species, edges)).reshape(-1, self.layout.lmax + 1, self.channels)
        m0 = m0 * edges.weights[:, None, None]
        reduced = torch.cat([m0, m0.new_zeros((m0.shape[0], self.layout.n_reduced - m0.shape[1], self.channels))], 1)
        full = edges.rotation.from_edge(reduced)
        return scatter_sum(full, edges.edge_index[0], edges.n_nodes) / self.avg_degree


class GraphAttention(nn.Module):
    """Equivariant graph attention with attention re-normalisation and a separable S2 activation.

    Messages [x_j, x_i] are rotated into the edge frame, passed through an SO(2) convolution (whose
    extra m = 0 outputs give the attention logits and the gate of the S2 activation), the S2
    activation, a second SO(2) convolution giving ``heads`` value vectors, weighted by the per-head
    softmax over each centre's edges, rotated back, summed, and projected to ``out_channels``.
    """

    def __init__(self, layout: CoefficientLayout, channels: int, out_channels: int, n_species: int,
                 radial_sizes: list[int], hidden: int, heads: int, alpha_channels: int, value_channels: int,
                 grid_resolution: int) -> None:
        super().__init__()
        self.heads, self.alpha_channels = heads, alpha_channels
        self.edge_features = EdgeFeatures(n_species, radial_sizes[1])
        edge_in = [radial_sizes[0] + 2 * radial_sizes[1], *radial_sizes[1:]]
        self.conv_1 = SO2Convolution(2 * channels, hidden, layout, edge_in, extra_scalars=heads * alpha_channels + hidden)
        self.grid = S2Grid(layout.lmax, grid_resolution, layout)
        self.conv_2 = SO2Convolution(hidden, heads * value_channels, layout)
        self.alpha_norm = nn.LayerNorm(alpha_channels)
        self.alpha_dot = nn.Parameter(torch.empty(heads, alpha_channels).uniform_(-(alpha_channels**-0.5), alpha_channels**-0.5))
        self.proj = SO3Linear(heads * value_channels, out_channels, layout.lmax)

    def forward(self, x: Tensor, species: Tensor, edges: EdgeContext) -> Tensor:
        return self.proj(self._aggregate(x, species, edges))

    def vector(self, x: Tensor, species: Tensor, edges: EdgeContext) -> Tensor:
        """The l = 1 output ``(N, 3, out_channels)`` alone (a direct-force head's): the value vectors
        are computed for the degrees l <= 1 only."""
        return self.proj(self._aggregate(x, species, edges, lmax_out=1))[:, 1:4]

    def _aggregate(self, x: Tensor, species: Tensor, edges: EdgeContext, lmax_out: int | None = None) -> Tensor:
        """The attention-weighted sum of value vectors over each centre's edges ``(N, (l+1)^2, heads V)``,
        for the degrees up to ``lmax_out`` (all by default)."""
        i = edges.edge_index[0]
        pairs = x.index_select(0, edges.edge_index.T.flip(1).reshape(-1)).unflatten(0, (-1, 2))
        messages = edges.rotation.to_edge(pairs)  # [E, 2, N_red, C]: x_j, x_i
        messages, extra = self.conv_1(messages, self.edge_features(species, edges))
        alpha_in, gate = extra.split([self.heads * self.alpha_channels, extra.shape[1] - self.heads * self.alpha_channels], 1)
        messages = self.grid.separable_activation(gate, messages)
        values, _ = self.conv_2(messages, lmax_out=lmax_out)  # [E, N_red, heads V]
        logits = self.alpha_norm(alpha_in.reshape(-1, self.heads, self.alpha_channels))
        logits = torch.einsum("ehk,hk->eh", smooth_leaky_relu(logits), self.alpha_dot)
        alpha = segment_softmax(logits, edges.weights, i, edges.n_nodes) * edges.weights[:, None]  # [E, heads]
        values = (values.unflatten(2, (self.heads, -1)) * alpha[:, None, :, None]).flatten(2)
        return scatter_sum(edges.rotation.from_edge(values, lmax_out), i, edges.n_nodes)


class FeedForward(nn.Module):
    """Degree-wise linear, then a pointwise MLP on the S2 grid (with l = 0 gated separately), then linear.

    The grid MLP is Linear -> SiLU -> Linear -> SiLU -> Linear on the channels of every grid point.
    Its first and last layers commute with the (linear, coefficient-wise) grid projections, so they act
    on the (L+1)^2 coefficients instead of the P grid points: the same map at a fraction of the cost.
    """

    def __init__(self, lmax: int, channels: int, hidden: int, out_channels: int, grid_resolution: int) -> None:
        super().__init__()
        self.scalar_mlp = nn.Sequential(nn.Linear(channels, hidden), nn.SiLU())
        self.linear_1 = SO3Linear(channels, hidden, lmax)
        self.grid = S2Grid(lmax, grid_resolution)
        self.grid_mlp = nn.Sequential(
            nn.Linear(hidden, hidden, bias=False), nn.SiLU(), nn.Linear(hidden, hidden, bias=False), nn.SiLU(),
            nn.Linear(hidden, hidden, bias=False),
        )
        self.linear_2 = SO3Linear(hidden, out_channels, lmax)

    def forward(self, x: Tensor) -> Tensor:
        gate = self.scalar_mlp(x[:, 0])
        first, act, middle, _, last = self.grid_mlp
        h = last(self.grid.pointwise(first(self.linear_1(x)), lambda grid: act(middle(act(grid)))))
        return self.linear_2(torch.cat([gate[:, None], h[:, 1:]], dim=1))

    def scalar(self, x: Tensor) -> Tensor:
        """The l = 0 output ``(N, out_channels)`` alone: it depends on the gate only, so no grid is built."""
        return self.linear_2.scalar(self.scalar_mlp(x[:, 0]))


class TransformerBlock(nn.Module):
    """x <- x + attention(norm_1(x)); x <- x + feed_forward(norm_2(x))."""

    def __init__(self, norm: str, layout: CoefficientLayout, channels: int, attention: GraphAttention,
                 feed_forward: FeedForward) -> None:
        super().__init__()
        self.norm_1 = EquivariantNorm(norm, layout.lmax, channels)
        self.attention = attention
        self.norm_2 = EquivariantNorm(norm, layout.lmax, channels)
        self.feed_forward = feed_forward

    def forward(self, x: Tensor, species: Tensor, edges: EdgeContext) -> Tensor:
        x = x + self.attention(self.norm_1(x), species, edges)
        return x + self.feed_forward(self.norm_2(x))
