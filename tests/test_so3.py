"""Exact SO(3) machinery of the eSCN/EquiformerV2 layers."""

from __future__ import annotations

import pytest
import torch
from e3nn import o3

from potentials.equiformer_v2.so3 import CoefficientLayout, WignerD, edge_frames


def spherical_harmonics(lmax: int, x: torch.Tensor) -> torch.Tensor:
    return o3.spherical_harmonics(list(range(lmax + 1)), x, normalize=True)


@pytest.mark.parametrize("lmax", [1, 2, 4, 6])
def test_wigner_d_rotates_spherical_harmonics(lmax: int) -> None:
    """Y(R x) = D(R) Y(x), D orthogonal, D(R1 R2) = D(R1) D(R2), to rounding in float64."""
    torch.manual_seed(0)
    rotations = o3.rand_matrix(6, dtype=torch.float64)
    x = torch.randn(10, 3, dtype=torch.float64)
    wigner = WignerD(lmax)
    d = wigner(rotations)  # [6, n, n]
    n = (lmax + 1) ** 2
    assert d.shape == (6, n, n)
    y, y_rot = spherical_harmonics(lmax, x), spherical_harmonics(lmax, torch.einsum("eij,nj->eni", rotations, x))
    assert (y_rot - torch.einsum("eij,nj->eni", d, y)).abs().max() < 1e-13
    assert (d @ d.transpose(1, 2) - torch.eye(n, dtype=torch.float64)).abs().max() < 1e-13
    assert (wigner(rotations[:3] @ rotations[3:]) - d[:3] @ d[3:]).abs().max() < 1e-13


def test_wigner_d_gradients() -> None:
    wigner = WignerD(3)
    rotation = o3.rand_matrix(2, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda r: wigner(r), (rotation,))


def test_edge_frames_take_the_edge_to_the_polar_axis() -> None:
    torch.manual_seed(1)
    vectors = torch.cat([torch.randn(50, 3, dtype=torch.float64), torch.eye(3, dtype=torch.float64) * 2.5])
    frames = edge_frames(vectors)
    n = vectors / vectors.norm(dim=1, keepdim=True)
    assert (torch.einsum("eij,ej->ei", frames, n) - torch.tensor([0.0, 1.0, 0.0])).abs().max() < 1e-14
    assert (frames @ frames.transpose(1, 2) - torch.eye(3)).abs().max() < 1e-14
    assert (torch.linalg.det(frames) - 1).abs().max() < 1e-14
    reference = torch.randn(53, 3, dtype=torch.float64)
    assert (torch.einsum("eij,ej->ei", edge_frames(vectors, reference), n)[:, 1] - 1).abs().max() < 1e-14


def test_edge_frames_are_rotation_covariant_up_to_a_roll() -> None:
    """Frames of rotated edges differ from the originals only by a rotation about the polar axis."""
    torch.manual_seed(2)
    vectors = torch.randn(20, 3, dtype=torch.float64)
    rotation = o3.rand_matrix(dtype=torch.float64)
    roll = edge_frames(vectors @ rotation.T) @ rotation @ edge_frames(vectors).transpose(1, 2)
    y = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    assert (roll @ y - y).abs().max() < 1e-13  # the roll keeps the polar axis fixed


@pytest.mark.parametrize(("lmax", "mmax", "n_reduced", "m_sizes"), [(4, 2, 19, [5, 4, 3]), (6, 2, 29, [7, 6, 5]), (6, 3, 37, [7, 6, 5, 4])])
def test_coefficient_layout(lmax: int, mmax: int, n_reduced: int, m_sizes: list[int]) -> None:
    layout = CoefficientLayout(lmax, mmax)
    assert layout.n_reduced == n_reduced and layout.m_sizes == m_sizes
    assert layout.reduced.unique().numel() == n_reduced
    l = layout.degree
    m = layout.reduced - l * l - l
    assert (m.abs() <= mmax).all() and (m.abs() <= l).all()
    assert m[: lmax + 1].eq(0).all() and m[lmax + 1 : 2 * lmax + 1].eq(1).all()  # [m=0: l=0..L], [m=+1: l=1..L]
    with pytest.raises(ValueError, match="mmax"):
        CoefficientLayout(2, 3)
