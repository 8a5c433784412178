"""SO(2) convolution (eSCN; Passaro and Zitnick, ICML 2023): the edge-frame linear map of EquiformerV2.

In a frame whose polar axis lies along the edge, a rotation-equivariant linear map of spherical
harmonic coefficients only mixes coefficients of equal |m|, and for m > 0 it acts on the (+m, -m)
pair like multiplication by a complex number:

    y_{+m} = W_r x_{+m} - W_i x_{-m},    y_{-m} = W_r x_{-m} + W_i x_{+m}

evaluated with three matrix products instead of four (Gauss), y_{-m} being
(W_r + W_i)(x_{+m} + x_{-m}) - W_r x_{+m} - W_i x_{-m}; m = 0 gets a plain linear map with bias.
Inputs may first be scaled by a radial network of the invariant edge features, one weight per
(m, l, channel) shared by +m and -m.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .layers import RadialMLP
from .so3 import CoefficientLayout


class SO2Convolution(nn.Module):
    """SO(2) convolution of edge features in the reduced m-primary layout.

    Args:
        in_channels, out_channels: channels C_in and C_out.
        layout: the coefficient layout (lmax, mmax).
        radial_sizes: sizes of the radial network's input and hidden layers (its output size is
            implied), or None for no radial scaling.
        extra_scalars: extra invariant outputs of the m = 0 map, returned separately.

    ``forward(x, edge_features)``: ``x`` ``(E, N_red, C_in)``, or ``(E, S, N_red, C_in / S)`` for S
    sources whose channels are joined per coefficient (the neighbour's and the centre's features, say,
    without concatenating them); ``edge_features`` ``(E, radial_sizes[0])``; returns
    ``(E, N_red, C_out)`` and the extra scalars ``(E, extra_scalars)`` (or None). With ``lmax_out``,
    only the outputs of degrees l <= lmax_out are computed, in the layout (lmax_out, min(mmax, lmax_out)).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        layout: CoefficientLayout,
        radial_sizes: list[int] | None = None,
        extra_scalars: int = 0,
    ) -> None:
        super().__init__()
        self.layout, self.out_channels, self.extra_scalars = layout, out_channels, extra_scalars
        sizes = layout.m_sizes
        self.fc_m0 = nn.Linear(sizes[0] * in_channels, sizes[0] * out_channels + extra_scalars)
        self.fc_m = nn.ModuleList(nn.Linear(k * in_channels, 2 * k * out_channels, bias=False) for k in sizes[1:])
        with torch.no_grad():
            for fc in self.fc_m:
                fc.weight.mul_(1 / math.sqrt(2))
        self.radial_widths = [k * in_channels for k in sizes]
        self.radial = RadialMLP([*radial_sizes, sum(self.radial_widths)]) if radial_sizes else None

    def forward(
        self, x: Tensor, edge_features: Tensor | None = None, lmax_out: int | None = None
    ) -> tuple[Tensor, Tensor | None]:
        if x.dim() == 3:
            x = x[:, None]
        n_edges, channels = x.shape[0], self.out_channels
        sizes = self.layout.m_sizes
        lmax_out = self.layout.lmax if lmax_out is None else lmax_out
        weights = self.radial(edge_features).split(self.radial_widths, dim=1) if self.radial is not None else None

        def block(start: int, rows: int, groups: int, weight: Tensor | None) -> Tensor:
            """Rows [start, start + rows) of every source as ``(E, groups, rows / groups * S * C)``,
            flattened (row, source, channel); the radial weight, when given, scales every group."""
            part = x[:, :, start : start + rows].transpose(1, 2).unflatten(1, (groups, rows // groups))
            if weight is not None:
                part = weight.view(n_edges, 1, *part.shape[2:]) * part  # weight first: contiguous result
            return part.flatten(2)

        # output rows of order m are the degrees l = m..L: the first lmax_out - m + 1 of them are kept
        kept = self.extra_scalars + (lmax_out + 1) * channels
        y0 = nn.functional.linear(block(0, sizes[0], 1, weights[0] if weights else None)[:, 0],
                                  self.fc_m0.weight[:kept], self.fc_m0.bias[:kept])
        extra = y0[:, : self.extra_scalars] if self.extra_scalars else None
        out = [y0[:, self.extra_scalars :].reshape(n_edges, lmax_out + 1, channels)]

        offset = sizes[0]
        for m, fc in enumerate(self.fc_m[: min(self.layout.mmax, lmax_out)], start=1):
            k, degrees = sizes[m], lmax_out - m + 1
            x_plus, x_minus = block(offset, 2 * k, 2, weights[m] if weights else None).unbind(1)
            w_r, w_i = (w[: degrees * channels] for w in fc.weight.chunk(2, dim=0))
            # Gauss's three-product complex multiplication (one matrix product fewer than four)
            rr, ii = x_plus @ w_r.T, x_minus @ w_i.T
            minus = ((x_plus + x_minus) @ (w_r + w_i).T).sub_(rr).sub_(ii)
            out += [(rr - ii).view(n_edges, degrees, channels), minus.view(n_edges, degrees, channels)]
            offset += 2 * k
        return torch.cat(out, dim=1), extra
