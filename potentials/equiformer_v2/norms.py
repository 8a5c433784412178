"""Equivariant normalisations of spherical-harmonic features ``(N, (L+1)^2, C)`` (eps = 1e-5).

- ``layer_norm_sh`` (EquiformerV2's separable layer norm): LayerNorm on l = 0; every l > 0 divided
  by one RMS per node, sigma^2 = mean_c sum_{l>0} sum_m x^2 / ((2l + 1) L), then scaled per (l, c).
- ``rms_norm_sh``: l = 0 centred over channels; one RMS over all degrees,
  sigma^2 = mean_c sum_l sum_m x^2 / ((2l + 1)(L + 1)); scaled per (l, c); bias on l = 0.
- ``layer_norm``: each degree normalised by its own RMS (l = 0 centred); scaled per (l, c);
  bias on l = 0.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .so3 import Float64Constants, coefficient_degrees

NORMS = ("layer_norm_sh", "rms_norm_sh", "layer_norm")
EPS = 1e-5


def _degree_weights(lmax: int, first: int) -> Tensor:
    """1 / (2l + 1) for each coefficient of degree l >= first, divided by the number of degrees."""
    w = torch.cat([torch.full((2 * l + 1,), 1.0 / (2 * l + 1), dtype=torch.float64) for l in range(first, lmax + 1)])
    return w / (lmax + 1 - first)


class EquivariantNorm(nn.Module):
    """One of :data:`NORMS` for features of degrees 0..lmax with ``channels`` channels."""

    def __init__(self, kind: str, lmax: int, channels: int) -> None:
        super().__init__()
        if kind not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")
        self.kind, self.lmax = kind, lmax
        self.register_buffer("degree", coefficient_degrees(lmax), persistent=False)
        if kind == "layer_norm_sh":
            self.norm_l0 = nn.LayerNorm(channels, eps=EPS)
            self.affine_weight = nn.Parameter(torch.ones(lmax, channels))
            self.constants = Float64Constants(balance=_degree_weights(lmax, 1))
        else:
            self.affine_weight = nn.Parameter(torch.ones(lmax + 1, channels))
            self.affine_bias = nn.Parameter(torch.zeros(channels))
            self.constants = Float64Constants(balance=_degree_weights(lmax, 0))

    def forward(self, x: Tensor) -> Tensor:
        if self.kind == "layer_norm_sh":
            scalars = self.norm_l0(x[:, 0])
            if self.lmax == 0:
                return scalars[:, None]
            higher = x[:, 1:]
            sigma2 = torch.einsum("nic,i->n", higher.square(), self.constants.get("balance", x)) / x.shape[2]
            scale = (sigma2 + EPS).rsqrt()[:, None, None] * self.affine_weight[self.degree[1:] - 1]
            return torch.cat([scalars[:, None], higher * scale], dim=1)
        x = torch.cat([x[:, :1] - x[:, :1].mean(dim=2, keepdim=True), x[:, 1:]], dim=1)
        if self.kind == "rms_norm_sh":
            sigma2 = torch.einsum("nic,i->n", x.square(), self.constants.get("balance", x))[:, None, None] / x.shape[2]
        else:  # per-degree RMS
            per_coeff = x.square().mean(dim=2)  # [N, (L+1)^2]
            sums = per_coeff.new_zeros((x.shape[0], self.lmax + 1)).index_add(1, self.degree, per_coeff)
            sigma2 = (sums / (2 * torch.arange(self.lmax + 1, device=x.device) + 1))[:, self.degree, None]
        out = x * (sigma2 + EPS).rsqrt() * self.affine_weight[self.degree]
        return torch.cat([out[:, :1] + self.affine_bias, out[:, 1:]], dim=1)
