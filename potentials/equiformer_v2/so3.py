"""SO(3) machinery for eSCN-style models: coefficient layouts, Wigner-D matrices and edge frames.

Conventions are e3nn's: real spherical harmonics with the polar axis along y; a feature of degree
l <= L is stored in l-primary order at index l^2 + l + m (m = -l..l), and the l = 1 block is
Cartesian (x, y, z), so D^1(R) = R.
"""

from __future__ import annotations

import math

import torch
from e3nn import o3
from torch import Tensor, nn


def coefficient_degrees(lmax: int) -> Tensor:
    """Degree l of each coefficient ``((L+1)^2,)`` in the full l-primary layout."""
    return torch.cat([torch.full((2 * l + 1,), l) for l in range(lmax + 1)])


class CoefficientLayout:
    """Index maps between the full l-primary layout and the reduced, m-primary edge-frame layout.

    In an edge frame (edge along y), an SO(2) convolution only mixes coefficients of equal |m|, and
    only |m| <= mmax are kept: N_red = sum_l min(2l + 1, 2 mmax + 1) coefficients. The m-primary
    order is [m = 0: l = 0..L], [m = +1: l = 1..L], [m = -1: l = 1..L], ..., [±mmax: l = mmax..L].

    Attributes:
        lmax, mmax: the degrees and orders kept.
        reduced: ``(N_red,)`` l-primary indices of the reduced coefficients, in m-primary order.
        m_sizes: number of degrees l for each order m = 0..mmax.
        degree: ``(N_red,)`` degree l of each reduced coefficient, in m-primary order.
    """

    def __init__(self, lmax: int, mmax: int) -> None:
        if not 0 <= mmax <= lmax:
            raise ValueError(f"need 0 <= mmax <= lmax, got lmax={lmax}, mmax={mmax}")
        self.lmax, self.mmax = lmax, mmax
        order: list[tuple[int, int]] = [(l, 0) for l in range(lmax + 1)]
        for m in range(1, mmax + 1):
            order += [(l, m) for l in range(m, lmax + 1)] + [(l, -m) for l in range(m, lmax + 1)]
        self.reduced = torch.tensor([l * l + l + m for l, m in order])
        self.degree = torch.tensor([l for l, _ in order])
        self.m_sizes = [lmax + 1] + [lmax - m + 1 for m in range(1, mmax + 1)]

    def truncation_rescale(self) -> Tensor:
        """``(N_red,)`` float64 factors sqrt((2l + 1) / (2 mmax + 1)) for degrees l > mmax, else 1:
        the reference's compensation for the orders |m| > mmax dropped in edge frames."""
        degree = self.degree.double()
        return torch.where(degree > self.mmax, torch.sqrt((2 * degree + 1) / (2 * self.mmax + 1)), 1.0)

    def rows_up_to(self, lmax: int) -> Tensor:
        """``(n,)`` positions, in this layout, of the coefficients of degrees l <= ``lmax``, in the
        order of the layout (lmax, min(mmax, lmax)) they form."""
        position = {int(c): k for k, c in enumerate(self.reduced)}
        return torch.tensor([position[int(c)] for c in CoefficientLayout(lmax, min(self.mmax, lmax)).reduced])

    @property
    def n_full(self) -> int:
        return (self.lmax + 1) ** 2

    @property
    def n_reduced(self) -> int:
        return int(self.reduced.numel())


class Float64Constants:
    """Constant tensors computed in float64 and kept outside a module's buffers, so that casting a
    model to float32 and back never rounds them; copies cast to a dtype and device are cached."""

    def __init__(self, **values: Tensor) -> None:
        self._values = values
        self._cast: dict[tuple[str, torch.dtype, torch.device], Tensor] = {}

    def get(self, name: str, like: Tensor) -> Tensor:
        """The constant ``name`` in the dtype and on the device of ``like``."""
        key = (name, like.dtype, like.device)
        if key not in self._cast:
            # made outside inference mode: a copy cached during an energy-only call under
            # torch.inference_mode() must still serve a later call that differentiates (stress)
            with torch.inference_mode(False):
                self._cast[key] = self._values[name].to(dtype=like.dtype, device=like.device)
        return self._cast[key]


class WignerD(nn.Module):
    """Wigner-D matrices D^l(R), l = 0..L, of rotation matrices, as one block-diagonal matrix.

    D^1 = R and D^l = C_l^T (D^(l-1) ⊗ D^1) C_l with the Clebsch-Gordan coefficients C_l of
    (l-1) ⊗ 1 -> l: a polynomial in the entries of R, exact in float64 and smooth everywhere, so
    gradients flow through edge frames (no Euler angles, no pole singularities).
    Input ``(E, 3, 3)``; output ``(E, (L+1)^2, (L+1)^2)``.
    """

    def __init__(self, lmax: int) -> None:
        super().__init__()
        self.lmax = lmax
        cg = {f"cg_{l}": o3.wigner_3j(l - 1, 1, l, dtype=torch.float64) * math.sqrt(2 * l + 1) for l in range(2, lmax + 1)}
        self.constants = Float64Constants(**cg)

    def blocks(self, rotation: Tensor) -> list[Tensor]:
        """``[D^0, D^1, ..., D^L]``, each ``(E, 2l+1, 2l+1)``."""
        out = [rotation.new_ones((rotation.shape[0], 1, 1)), rotation]
        for l in range(2, self.lmax + 1):
            cg = self.constants.get(f"cg_{l}", rotation)
            out.append(torch.einsum("abm,cdn,eac,ebd->emn", cg, cg, out[l - 1], rotation))
        return out[: self.lmax + 1]

    def forward(self, rotation: Tensor) -> Tensor:
        return _block_diag(self.blocks(rotation))


def _block_diag(blocks: list[Tensor]) -> Tensor:
    """Batched block-diagonal matrix ``(E, n, n)`` of square blocks ``(E, n_k, n_k)``."""
    size = sum(b.shape[-1] for b in blocks)
    out = blocks[0].new_zeros((blocks[0].shape[0], size, size))
    start = 0
    for b in blocks:
        n = b.shape[-1]
        out[:, start : start + n, start : start + n] = b
        start += n
    return out


def edge_frames(vectors: Tensor, reference: Tensor | None = None) -> Tensor:
    """Rotations R ``(E, 3, 3)`` that take each edge direction to the polar axis: R n̂ = ŷ.

    The roll about the edge is fixed by a second vector: ``reference`` ``(E, 3)`` when given (to
    reproduce a reference implementation's random frames), otherwise the coordinate axis least
    aligned with the edge (deterministic; ties go to the first axis). Rows of R are
    (ẑ', n̂, -ŷ') with ẑ' = n̂ × v / |n̂ × v| and ŷ' = n̂ × ẑ', so det R = +1.
    """
    n = vectors / torch.linalg.vector_norm(vectors, dim=-1, keepdim=True)
    if reference is None:
        axis = torch.argmin(n.abs(), dim=-1)
        reference = torch.nn.functional.one_hot(axis, 3).to(n.dtype)
    z = torch.linalg.cross(n, reference)
    z = z / torch.linalg.vector_norm(z, dim=-1, keepdim=True)
    y = torch.linalg.cross(n, z)
    return torch.stack([z, n, -y], dim=1)


class EdgeRotation:
    """Rotation of per-edge features into and out of the edge frames, for one forward pass.

    ``to_edge`` takes full l-primary features ``(E, (L+1)^2, C)`` to the reduced m-primary layout
    ``(E, N_red, C)`` of the edge frame; ``from_edge`` goes back, scaling degrees l > mmax by
    sqrt((2l + 1) / (2 mmax + 1)) as the reference does (it keeps feature norms comparable when
    orders |m| > mmax are dropped).
    """

    def __init__(self, wigner: Tensor, layout: CoefficientLayout) -> None:
        self.layout = layout
        index = layout.reduced.to(wigner.device)
        self.forward_matrix = wigner[:, index, :]  # [E, N_red, (L+1)^2]
        rescale = layout.truncation_rescale().to(device=wigner.device, dtype=wigner.dtype)
        self.inverse_matrix = self.forward_matrix.transpose(1, 2) * rescale  # [E, (L+1)^2, N_red]

    def to_edge(self, x: Tensor) -> Tensor:
        """``(E, ..., (L+1)^2, C)`` -> ``(E, ..., N_red, C)``."""
        return _per_edge(self.forward_matrix, x) @ x

    def from_edge(self, x: Tensor, lmax: int | None = None) -> Tensor:
        """``(E, ..., N_red, C)`` -> ``(E, ..., (L+1)^2, C)``; with ``lmax``, features of the degrees
        l <= lmax only, in the layout (lmax, min(mmax, lmax)), to ``(E, ..., (lmax+1)^2, C)``."""
        matrix = self.inverse_matrix
        if lmax is not None and lmax < self.layout.lmax:
            columns = self.layout.rows_up_to(lmax).to(matrix.device)
            matrix = matrix[:, : (lmax + 1) ** 2].index_select(2, columns)
        return _per_edge(matrix, x) @ x


def _per_edge(matrix: Tensor, x: Tensor) -> Tensor:
    """``matrix`` ``(E, a, b)`` viewed to broadcast over the middle dimensions of ``x`` ``(E, ..., b, C)``."""
    return matrix.view(matrix.shape[0], *(1,) * (x.dim() - 3), *matrix.shape[1:])
