"""Radial functions of the edge length: smooth cutoff envelopes."""

from __future__ import annotations

from torch import Tensor


def polynomial_envelope(r: Tensor, cutoff: float, p: int = 6) -> Tensor:
    """Smooth envelope u(r/r_c) that is 1 at r = 0 and reaches 0 at the cutoff.

    u(x) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2) for x < 1, else 0
    (Gasteiger et al., DimeNet, ICLR 2020, Eq. 8). u, u' and u'' vanish at x = 1, so an energy
    multiplied by it stays continuous, with continuous forces, as an atom crosses the cutoff.
    """
    x = r / cutoff
    u = 1 - (p + 1) * (p + 2) / 2 * x**p + p * (p + 2) * x ** (p + 1) - p * (p + 1) / 2 * x ** (p + 2)
    return u * (x < 1)
