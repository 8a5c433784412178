"""Small layers of EquiformerV2: degree-wise linear maps, radial networks, distance bases, the S2 grid."""

from __future__ import annotations

import math

import torch
from e3nn import o3
from torch import Tensor, nn

from .so3 import CoefficientLayout, Float64Constants, coefficient_degrees


class SO3Linear(nn.Module):
    """Degree-wise linear map of ``(N, (L+1)^2, C_in)`` features to ``(N, (L+1)^2, C_out)``.

    out[n, (l, m), o] = sum_c W_l[o, c] x[n, (l, m), c] + b[o] [l = 0]: one weight per degree, a bias
    on the invariant part only, so the map commutes with rotations.
    """

    def __init__(self, in_features: int, out_features: int, lmax: int) -> None:
        super().__init__()
        bound = 1 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(lmax + 1, out_features, in_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.register_buffer("degree", coefficient_degrees(lmax), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.einsum("nic,ioc->nio", x, self.weight[self.degree])
        return torch.cat([out[:, :1] + self.bias, out[:, 1:]], dim=1)

    def scalar(self, x: Tensor) -> Tensor:
        """The l = 0 part of the map, for invariant inputs ``(N, C_in)`` -> ``(N, C_out)``."""
        return torch.nn.functional.linear(x, self.weight[0], self.bias)


class RadialMLP(nn.Module):
    """Linear -> LayerNorm -> SiLU -> ... -> Linear on invariant edge features ``(E, sizes[0])``."""

    def __init__(self, sizes: list[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(n_in, n_out))
            if k < len(sizes) - 2:
                layers += [nn.LayerNorm(n_out), nn.SiLU()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class GaussianBasis(nn.Module):
    """exp(-(d - mu_k)^2 / (2 (w Δ)^2)) on ``num`` centres mu_k evenly spaced on [0, cutoff] (Δ apart).

    Input ``(E,)`` distances [Å], output ``(E, num)``.
    """

    def __init__(self, cutoff: float, num: int, width: float = 2.0) -> None:
        super().__init__()
        offsets = torch.linspace(0.0, cutoff, num)
        self.register_buffer("offsets", offsets, persistent=False)
        self.coeff = -0.5 / (width * (offsets[1] - offsets[0]).item()) ** 2

    def forward(self, d: Tensor) -> Tensor:
        return torch.exp(self.coeff * (d[:, None] - self.offsets) ** 2)


def smooth_leaky_relu(x: Tensor, negative_slope: float = 0.2) -> Tensor:
    """f(x) = (1 + a)/2 x + (1 - a)/2 x (2 sigmoid(x) - 1): a smooth leaky ReLU."""
    return 0.5 * (1 + negative_slope) * x + 0.5 * (1 - negative_slope) * x * (2 * torch.sigmoid(x) - 1)


class S2Grid(nn.Module):
    """Projection of spherical-harmonic coefficients to values on a (res x res) sphere grid and back.

    e3nn's ``ToS2Grid``/``FromS2Grid`` with 'component' normalisation, for degrees up to ``lmax``,
    restricted to the coefficients of ``layout`` when given (orders |m| <= mmax, m-primary, with
    the degrees l > mmax scaled by sqrt((2l + 1) / (2 mmax + 1)) as in the edge rotation).
    """

    def __init__(self, lmax: int, resolution: int, layout: CoefficientLayout | None = None) -> None:
        super().__init__()
        to_grid = o3.ToS2Grid(lmax, (resolution, resolution), normalization="component", dtype=torch.float64)
        from_grid = o3.FromS2Grid((resolution, resolution), lmax, normalization="component", dtype=torch.float64)
        to_mat = torch.einsum("mbi,am->bai", to_grid.shb, to_grid.sha)  # [res_beta, res_alpha, (L+1)^2]
        from_mat = torch.einsum("am,mbi->bai", from_grid.sha, from_grid.shb)
        if layout is not None:
            scale = layout.truncation_rescale()
            to_mat, from_mat = to_mat[..., layout.reduced] * scale, from_mat[..., layout.reduced] * scale
        # flattened grids: to (P, n_coeff) and from (n_coeff, P), P = res * res points
        self.constants = Float64Constants(to_mat=to_mat.flatten(0, 1), from_mat=from_mat.flatten(0, 1).T.contiguous())

    def to_grid(self, x: Tensor) -> Tensor:
        """``(N, n_coeff, C)`` -> values at the grid points ``(N, P, C)``."""
        return _each(self.constants.get("to_mat", x), x)

    def from_grid(self, grid: Tensor) -> Tensor:
        """``(N, P, C)`` -> ``(N, n_coeff, C)``."""
        return _each(self.constants.get("from_mat", grid), grid)

    def silu(self, x: Tensor) -> Tensor:
        """``from_grid(SiLU(to_grid(x)))`` for ``(N, n_coeff, C)``, without keeping the grid values.

        The grid has P / n_coeff times more numbers than ``x`` (17x for L = 4, M = 2): it is
        evaluated a few rows at a time, so it stays in cache, and recomputed in the backward pass.
        """
        return _GridSiLU.apply(x, self.constants.get("to_mat", x), self.constants.get("from_mat", x))

    def separable_activation(self, scalars: Tensor, x: Tensor) -> Tensor:
        """SiLU on the sphere for l > 0, with the l = 0 channel replaced by SiLU(``scalars``) ``(N, C)``."""
        out = self.silu(x)
        return torch.cat([torch.nn.functional.silu(scalars)[:, None], out[:, 1:]], dim=1)


#: grid values evaluated at once by :class:`_GridSiLU` (about 1 MB in float32 on a CPU; on a GPU,
#: where each launch costs more than the memory, large blocks)
_GRID_BLOCK = {"cpu": 2**18, "cuda": 2**25}


class _GridSiLU(torch.autograd.Function):
    """y = B SiLU(A x) row by row for x ``(N, n, C)``, A ``(P, n)``, B ``(n, P)``, in row blocks.

    Backward: dL/dx = A^T [SiLU'(A x) * (B^T dL/dy)] with the grid A x recomputed block by block.
    Under ``create_graph`` (training on forces) the backward is written in differentiable operations
    on whole tensors, so second derivatives exist.
    """

    @staticmethod
    def forward(ctx, x: Tensor, to_mat: Tensor, from_mat: Tensor) -> Tensor:
        ctx.save_for_backward(x, to_mat, from_mat)
        out = x.new_empty(x.shape)
        for rows in _row_blocks(x, to_mat.shape[0]):
            grid = torch.nn.functional.silu(_each(to_mat, x[rows]), inplace=True)
            _each(from_mat, grid, out=out[rows])
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        x, to_mat, from_mat = ctx.saved_tensors
        if torch.is_grad_enabled():
            grid = _each(to_mat, x)
            return _each(to_mat.T, _silu_derivative(grid) * _each(from_mat.T, grad)), None, None
        out = x.new_empty(x.shape)
        for rows in _row_blocks(x, to_mat.shape[0]):
            upstream = _each(from_mat.T, grad[rows])
            _each(to_mat.T, upstream.mul_(_silu_derivative(_each(to_mat, x[rows]))), out=out[rows])
        return out, None, None


def _each(matrix: Tensor, x: Tensor, out: Tensor | None = None) -> Tensor:
    """``matrix @ x[n]`` for every n of ``x`` ``(N, a, C)``: one batched product (broadcasting
    ``matmul`` would first copy the matrix N times)."""
    return torch.bmm(matrix.expand(x.shape[0], *matrix.shape), x, out=out)


def _silu_derivative(x: Tensor) -> Tensor:
    """d SiLU / dx = sigma(x) (1 + x (1 - sigma(x)))."""
    s = torch.sigmoid(x)
    return s * (1 + x * (1 - s))


def _row_blocks(x: Tensor, points: int) -> list[slice]:
    """Slices of the rows of ``x`` ``(N, n, C)`` whose grids ``(rows, points, C)`` fill one block."""
    size = max(1, _GRID_BLOCK.get(x.device.type, _GRID_BLOCK["cuda"]) // (points * x.shape[2]))
    return [slice(start, start + size) for start in range(0, x.shape[0], size)]
