"""Small layers of EquiformerV2: degree-wise linear maps, radial networks, distance bases, the S2 grid."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from e3nn import o3
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ..nn import default_dtype
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
        """``x`` may hold the degrees up to any l <= L: ``(N, (l+1)^2, C_in)`` -> ``(N, (l+1)^2, C_out)``."""
        out = torch.einsum("nic,ioc->nio", x, self.weight[self.degree[: x.shape[1]]])
        out[:, 0] += self.bias
        return out

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

    Input ``(E,)`` distances [Å], output ``(E, num)``. Its first and second derivatives are written
    out (:class:`_Gaussians`): training on forces differentiates this ``(E, num)`` table twice, and
    autograd of the formula would keep and differentiate each of its four intermediate tables.
    """

    def __init__(self, cutoff: float, num: int, width: float = 2.0) -> None:
        super().__init__()
        offsets = torch.linspace(0.0, cutoff, num, dtype=torch.float64)
        self.constants = Float64Constants(offsets=offsets)
        self.coeff = -0.5 / (width * (offsets[1] - offsets[0]).item()) ** 2

    def forward(self, d: Tensor) -> Tensor:
        return _Gaussians.apply(d, self.constants.get("offsets", d), self.coeff)


class _Gaussians(torch.autograd.Function):
    """phi_k(d) = exp(c (d - mu_k)^2) ``(E, K)`` for distances d ``(E,)``, centres mu ``(K,)`` and c < 0.

    Backward: dL/dd = :class:`_GaussiansBackward` (d, dL/dphi), differentiable once more.
    """

    @staticmethod
    def forward(ctx, d: Tensor, offsets: Tensor, coeff: float) -> Tensor:
        phi = torch.exp(coeff * (d[:, None] - offsets) ** 2)
        ctx.save_for_backward(d, offsets, phi)
        ctx.coeff = coeff
        return phi

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        d, offsets, phi = ctx.saved_tensors
        return _GaussiansBackward.apply(d, grad, phi.detach(), offsets, ctx.coeff), None, None


class _GaussiansBackward(torch.autograd.Function):
    """g_d = sum_k g_k dphi_k/dd = 2c sum_k g_k (d - mu_k) phi_k ``(E,)`` as a function of d ``(E,)``
    and g = dL/dphi ``(E, K)``; phi(d) comes along computed (its dependence on d is in the formulas).

    Its backward, for an upstream u = dL'/dg_d ``(E,)``, with d/dd [(d - mu) phi] = phi (1 + 2c (d - mu)^2):

        dL'/dg_k = 2c u (d - mu_k) phi_k
        dL'/dd   = 2c u sum_k g_k phi_k (1 + 2c (d - mu_k)^2)

    Third derivatives are not implemented: asking for them raises.
    """

    @staticmethod
    def forward(ctx, d: Tensor, grad: Tensor, phi: Tensor, offsets: Tensor, coeff: float) -> Tensor:
        ctx.save_for_backward(d, grad, phi, offsets)
        ctx.coeff = coeff
        return (d[:, None] - offsets).mul_(phi).mul_(grad).sum(1).mul_(2 * coeff)

    @staticmethod
    @once_differentiable
    def backward(ctx, upstream: Tensor) -> tuple[Tensor | None, ...]:
        d, grad, phi, offsets = ctx.saved_tensors
        scale = (2 * ctx.coeff) * upstream  # 2c u
        difference = d[:, None] - offsets
        grad_grad = (difference * phi).mul_(scale[:, None])
        grad_d = difference.square_().mul_(2 * ctx.coeff).add_(1).mul_(phi).mul_(grad).sum(1).mul_(scale)
        return grad_d, grad_grad, None, None, None


def smooth_leaky_relu(x: Tensor, negative_slope: float = 0.2) -> Tensor:
    """f(x) = (1 + a)/2 x + (1 - a)/2 x (2 sigmoid(x) - 1) = x (a + (1 - a) sigmoid(x)): a smooth leaky ReLU."""
    return x * (negative_slope + (1 - negative_slope) * torch.sigmoid(x))


class S2Grid(nn.Module):
    """Projection of spherical-harmonic coefficients to values on a (res x res) sphere grid and back.

    e3nn's ``ToS2Grid``/``FromS2Grid`` with 'component' normalisation, for degrees up to ``lmax``,
    restricted to the coefficients of ``layout`` when given (orders |m| <= mmax, m-primary, with
    the degrees l > mmax scaled by sqrt((2l + 1) / (2 mmax + 1)) as in the edge rotation).

    A harmonic factorises into latitude and longitude parts, Y_lm(beta, alpha) = P_lm(beta) T_m(alpha),
    so the projection runs in two steps: coefficients to (order, latitude) values, then orders to
    longitudes (and the reverse for ``from_grid``), about half the work of one dense matrix.
    """

    def __init__(self, lmax: int, resolution: int, layout: CoefficientLayout | None = None) -> None:
        super().__init__()
        with default_dtype(torch.float64):  # e3nn computes the quadrature weights in the default dtype
            to_grid = o3.ToS2Grid(lmax, (resolution, resolution), normalization="component", dtype=torch.float64)
            from_grid = o3.FromS2Grid((resolution, resolution), lmax, normalization="component", dtype=torch.float64)
        # latitude parts [order m, beta, coefficient] (zero unless m is the coefficient's order), and
        # longitude parts [alpha, order m], orders m = -lmax..lmax
        to_lat, to_lon, from_lat, from_lon = to_grid.shb, to_grid.sha, from_grid.shb, from_grid.sha
        if layout is not None:
            scale, orders = layout.truncation_rescale(), slice(lmax - layout.mmax, lmax + layout.mmax + 1)
            to_lat = to_lat[orders][..., layout.reduced] * scale
            from_lat = from_lat[orders][..., layout.reduced] * scale
            to_lon, from_lon = to_lon[:, orders], from_lon[:, orders]
        self.constants = Float64Constants(
            to_lat=to_lat.flatten(0, 1), to_lon=to_lon,  # (M res, n_coeff), (res, M)
            from_lon=from_lon.T.contiguous(),  # (M, res)
            from_lat=from_lat.flatten(0, 1).T.contiguous())  # (n_coeff, M res)

    def to_grid(self, x: Tensor) -> Tensor:
        """``(N, n_coeff, C)`` -> values at the P = res^2 grid points ``(N, P, C)``."""
        return _expand(self.constants.get("to_lat", x), self.constants.get("to_lon", x), x)

    def from_grid(self, grid: Tensor) -> Tensor:
        """``(N, P, C)`` -> ``(N, n_coeff, C)``."""
        return _contract(self.constants.get("from_lon", grid), self.constants.get("from_lat", grid), grid)

    def pointwise(self, x: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:
        """``from_grid(fn(to_grid(x)))`` for ``(N, n_coeff, C)`` and a map ``fn`` of each grid point's
        C channels to C channels, evaluated a few rows at a time so that each block's grid stays in cache."""
        return _blockwise(fn, x, *(self.constants.get(name, x) for name in _NAMES))

    def silu(self, x: Tensor) -> Tensor:
        """``from_grid(SiLU(to_grid(x)))`` for ``(N, n_coeff, C)``, without keeping the grid values.

        The grid has P / n_coeff times more numbers than ``x`` (17x for L = 4, M = 2): it is
        evaluated a few rows at a time, so it stays in cache, and recomputed in the backward pass.
        """
        return _GridSiLU.apply(x, *(self.constants.get(name, x) for name in _NAMES))

    def separable_activation(self, scalars: Tensor, x: Tensor) -> Tensor:
        """SiLU on the sphere for l > 0, with the l = 0 channel replaced by SiLU(``scalars``) ``(N, C)``."""
        out = self.silu(x)
        out[:, 0] = torch.nn.functional.silu(scalars)
        return out


#: the constants of a projection and its reverse, in the order :func:`_blockwise` takes them
_NAMES = ("to_lat", "to_lon", "from_lon", "from_lat")


def _blockwise(fn: Callable[[Tensor], Tensor], x: Tensor, to_lat: Tensor, to_lon: Tensor, from_lon: Tensor,
               from_lat: Tensor) -> Tensor:
    """:func:`_contract` of ``fn`` of :func:`_expand` of ``x`` ``(N, n, C)``, a block of rows at a time."""
    out = x.new_empty(x.shape)
    for rows in _row_blocks(x, _points(to_lat, to_lon)):
        out[rows] = _contract(from_lon, from_lat, fn(_expand(to_lat, to_lon, x[rows])))
    return out


def _expand(lat: Tensor, lon: Tensor, x: Tensor) -> Tensor:
    """Coefficients ``(N, n, C)`` to grid values ``(N, res_a * res_b, C)``: ``lat`` ``(M res_b, n)``
    gives (order, latitude) values, ``lon`` ``(res_a, M)`` combines the orders at each longitude."""
    n, channels = x.shape[0], x.shape[2]
    by_order = _each(lat, x).view(n, lon.shape[1], -1)
    return _each(lon, by_order).view(n, -1, channels)


def _contract(lon: Tensor, lat: Tensor, grid: Tensor, out: Tensor | None = None) -> Tensor:
    """Grid values ``(N, res_a * res_b, C)`` to coefficients ``(N, n, C)``, the reverse order of
    :func:`_expand`: ``lon`` ``(M, res_a)``, then ``lat`` ``(n, M res_b)``."""
    n, channels = grid.shape[0], grid.shape[2]
    by_order = _each(lon, grid.reshape(n, lon.shape[1], -1)).view(n, -1, channels)
    return _each(lat, by_order, out=out)


#: grid values evaluated at once by :class:`_GridSiLU` and its derivatives (about 2 MB in float32 on
#: a CPU; on a GPU, where each launch costs more than the memory, large blocks)
_GRID_BLOCK = {"cpu": 2**19, "cuda": 2**25}


class _GridSiLU(torch.autograd.Function):
    """y = B SiLU(A x) row by row for x ``(N, n, C)``, with A = :func:`_expand` and B = :func:`_contract`
    by their latitude and longitude matrices, in row blocks.

    Backward: dL/dx = :class:`_GridSiLUBackward` (x, dL/dy), itself blockwise and differentiable
    once more, so that training on forces (``create_graph``) never holds a whole grid either.
    """

    @staticmethod
    def forward(ctx, x: Tensor, to_lat: Tensor, to_lon: Tensor, from_lon: Tensor, from_lat: Tensor) -> Tensor:
        ctx.save_for_backward(x, to_lat, to_lon, from_lon, from_lat)
        return _blockwise(lambda grid: torch.nn.functional.silu(grid, inplace=True), x, to_lat, to_lon, from_lon, from_lat)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, *matrices = ctx.saved_tensors
        return _GridSiLUBackward.apply(x, grad, *matrices), None, None, None, None


class _GridSiLUBackward(torch.autograd.Function):
    """The derivative of :class:`_GridSiLU`, g_x = A^T [SiLU'(A x) * (B^T g_y)], as a function of
    x and g_y = dL/dy, both ``(N, n, C)`` (A^T contracts by the transposed matrices of A, B^T expands
    by those of B), with the grid A x recomputed block by block.

    Its backward, for an upstream u = dL'/dg_x ``(N, n, C)`` (the force loss's gradient):

        dL'/dg_y = B [SiLU'(A x) * (A u)]
        dL'/dx   = A^T [SiLU''(A x) * (B^T g_y) * (A u)]

    also block by block. Third derivatives are not implemented: asking for them raises.
    """

    @staticmethod
    def forward(ctx, x: Tensor, grad: Tensor, to_lat: Tensor, to_lon: Tensor, from_lon: Tensor,
                from_lat: Tensor) -> Tensor:
        ctx.save_for_backward(x, grad, to_lat, to_lon, from_lon, from_lat)
        out = x.new_empty(x.shape)
        for rows in _row_blocks(x, _points(to_lat, to_lon)):
            values = _silu_backward(_expand(from_lat.T, from_lon.T, grad[rows]), _expand(to_lat, to_lon, x[rows]))
            _contract(to_lon.T, to_lat.T, values, out=out[rows])
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, upstream: Tensor) -> tuple[Tensor | None, ...]:
        x, grad, to_lat, to_lon, from_lon, from_lat = ctx.saved_tensors
        grad_x, grad_grad = x.new_empty(x.shape), x.new_empty(x.shape)
        for rows in _row_blocks(x, _points(to_lat, to_lon)):
            grid = _expand(to_lat, to_lon, x[rows])  # A x
            pulled = _expand(to_lat, to_lon, upstream[rows])  # A u
            sigma = torch.sigmoid(grid)
            slope = torch.addcmul(sigma, sigma, sigma, value=-1)  # sigma (1 - sigma)
            # SiLU' = sigma + x sigma (1 - sigma)
            _contract(from_lon, from_lat, torch.addcmul(sigma, grid, slope).mul_(pulled), out=grad_grad[rows])
            # SiLU'' = sigma (1 - sigma) (2 + x - 2 x sigma), computed in the place of A x
            second = grid.addcmul_(grid, sigma, value=-2).add_(2).mul_(slope).mul_(pulled)
            _contract(to_lon.T, to_lat.T, second.mul_(_expand(from_lat.T, from_lon.T, grad[rows])), out=grad_x[rows])
        return grad_x, grad_grad, None, None, None, None


def _points(lat: Tensor, lon: Tensor) -> int:
    """Grid points res_a * res_b of the projection by ``lat`` ``(M res_b, n)`` and ``lon`` ``(res_a, M)``."""
    return lon.shape[0] * (lat.shape[0] // lon.shape[1])


def _each(matrix: Tensor, x: Tensor, out: Tensor | None = None) -> Tensor:
    """``matrix @ x[n]`` for every n of ``x`` ``(N, a, C)``: one batched product (broadcasting
    ``matmul`` would first copy the matrix N times)."""
    return torch.bmm(matrix.expand(x.shape[0], *matrix.shape), x, out=out)


#: grad * d SiLU / dx at x, ATen's fused kernel of SiLU's backward: grad sigma(x) (1 + x (1 - sigma(x)))
_silu_backward = torch.ops.aten.silu_backward


def _row_blocks(x: Tensor, points: int) -> list[slice]:
    """Slices of the rows of ``x`` ``(N, n, C)`` whose grids ``(rows, points, C)`` fill one block."""
    size = max(1, _GRID_BLOCK.get(x.device.type, _GRID_BLOCK["cuda"]) // (points * x.shape[2]))
    return [slice(start, start + size) for start in range(0, x.shape[0], size)]
