"""Radial functions of the edge length: smooth cutoff envelopes and radial bases."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def polynomial_envelope(r: Tensor, cutoff: float, p: int = 6) -> Tensor:
    """Smooth envelope u(r/r_c) that is 1 at r = 0 and reaches 0 at the cutoff.

    u(x) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2) for x < 1, else 0
    (Gasteiger et al., DimeNet, ICLR 2020, Eq. 8). u, u' and u'' vanish at x = 1, so an energy
    multiplied by it stays continuous, with continuous forces, as an atom crosses the cutoff.
    """
    x = r / cutoff
    u = 1 - (p + 1) * (p + 2) / 2 * x**p + p * (p + 2) * x ** (p + 1) - p * (p + 1) / 2 * x ** (p + 2)
    return u * (x < 1)


class ExpNormalBasis(nn.Module):
    """Trainable exponential-normal radial basis (Unke and Meuwly, PhysNet 2019; SAKE Eq. 7).

    phi_k(r) = exp(-beta_k (exp(-alpha r) - mu_k)^2) with alpha = 5 / r_c, mu_k initialised evenly on
    [exp(-5), 1] and beta_k = (2 (1 - exp(-5)) / K)^-2; mu and beta are trained.
    Input ``(n_edges,)`` lengths [Å], output ``(n_edges, K)``.
    """

    def __init__(self, num_basis: int, cutoff: float) -> None:
        super().__init__()
        self.alpha = 5.0 / cutoff
        low = math.exp(-5.0)
        self.mu = nn.Parameter(torch.linspace(low, 1.0, num_basis))
        self.beta = nn.Parameter(torch.full((num_basis,), (2 * (1 - low) / num_basis) ** -2))

    def forward(self, r: Tensor) -> Tensor:
        return torch.exp(-self.beta * (torch.exp(-self.alpha * r)[:, None] - self.mu) ** 2)
