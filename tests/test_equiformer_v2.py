"""EquiformerV2: exact equivariance of its parts, and the physics of the whole model in both modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import add_adsorbate, fcc111
from e3nn import o3

from equicalc import EquiCalculator, SystemBatch, predict
from equicalc.testing import assert_extensive, assert_forces_match_fd, assert_invariant, assert_stress_match_fd
from potentials import EquiformerV2, EquiformerV2Config
from potentials.equiformer_v2.layers import SO3Linear
from potentials.nn import default_dtype
from potentials.equiformer_v2.norms import NORMS, EquivariantNorm
from potentials.equiformer_v2.so2_conv import SO2Convolution
from potentials.equiformer_v2.so3 import CoefficientLayout, WignerD

SMALL = dict(cutoff=5.0, elements=(1, 6, 8, 29), num_layers=2, lmax=3, mmax=2, sphere_channels=16,
             attn_hidden_channels=16, num_heads=2, attn_alpha_channels=8, attn_value_channels=4,
             ffn_hidden_channels=16, edge_channels=16, num_distance_basis=32)


def model(mode: str = "conservative", seed: int = 0, **overrides) -> EquiformerV2:
    torch.manual_seed(seed)
    return EquiformerV2(EquiformerV2Config(**{**SMALL, "mode": mode, **overrides}))


def slab() -> Atoms:
    atoms = fcc111("Cu", (2, 2, 3), vacuum=5.0)
    add_adsorbate(atoms, "O", 1.4, "fcc")
    add_adsorbate(atoms, "H", 2.3, "fcc")
    atoms.rattle(0.05, seed=2)
    return atoms


def bulk_cell() -> Atoms:
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.numbers[1] = 8
    atoms.rattle(0.08, seed=4)
    return atoms


def rotation_about_y(angle: float) -> torch.Tensor:
    c, s = np.cos(angle), np.sin(angle)
    return torch.tensor([[[c, 0, s], [0, 1, 0], [-s, 0, c]]], dtype=torch.float64)


def test_so2_convolution_commutes_with_rotations_about_the_edge() -> None:
    torch.set_default_dtype(torch.float64)
    try:
        layout = CoefficientLayout(4, 2)
        conv = SO2Convolution(3, 5, layout, radial_sizes=[7, 8], extra_scalars=4)
        d = WignerD(4)(rotation_about_y(0.7))[0][layout.reduced][:, layout.reduced]  # acts within each |m|
        x, edge = torch.randn(6, layout.n_reduced, 3), torch.randn(6, 7)
        y, extra = conv(x, edge)
        y_rot, extra_rot = conv(torch.einsum("ij,ejc->eic", d, x), edge)
        assert (y_rot - torch.einsum("ij,ejc->eic", d, y)).abs().max() < 1e-12
        assert (extra_rot - extra).abs().max() < 1e-12
    finally:
        torch.set_default_dtype(torch.float32)


def test_so2_convolution_joins_sources_as_concatenated_channels() -> None:
    """``(E, 2, N_red, C)`` (neighbour and centre features kept apart) is the same input as their
    channel concatenation ``(E, N_red, 2C)``."""
    layout = CoefficientLayout(3, 2)
    conv = SO2Convolution(2 * 4, 5, layout, radial_sizes=[7, 8], extra_scalars=3).double()
    pair, edge = torch.randn(6, 2, layout.n_reduced, 4, dtype=torch.float64), torch.randn(6, 7, dtype=torch.float64)
    y, extra = conv(pair, edge)
    y_cat, extra_cat = conv(torch.cat([pair[:, 0], pair[:, 1]], dim=2), edge)
    assert (y - y_cat).abs().max() < 1e-12 and (extra - extra_cat).abs().max() < 1e-12


def test_so2_convolution_and_rotation_restricted_to_low_degrees() -> None:
    """Outputs of degrees l <= 1 alone (a force head's) equal those rows of the full convolution, and
    rotated back they equal the l <= 1 part of the full rotation."""
    from potentials.equiformer_v2.so3 import EdgeRotation, edge_frames

    layout = CoefficientLayout(3, 2)
    conv = SO2Convolution(4, 5, layout, radial_sizes=[7, 8], extra_scalars=3).double()
    x, edge = torch.randn(6, layout.n_reduced, 4, dtype=torch.float64), torch.randn(6, 7, dtype=torch.float64)
    full, extra = conv(x, edge)
    low, extra_low = conv(x, edge, lmax_out=1)
    rows = layout.rows_up_to(1)
    assert rows.tolist() == [0, 1, 4, 7]  # (l, m) = (0, 0), (1, 0), (1, +1), (1, -1) in layout (3, 2)
    assert low.shape == (6, 4, 5) and (low - full[:, rows]).abs().max() < 1e-12
    assert (extra_low - extra).abs().max() < 1e-12
    rotation = EdgeRotation(WignerD(3)(edge_frames(torch.randn(6, 3, dtype=torch.float64))), layout)
    assert (rotation.from_edge(low, lmax=1) - rotation.from_edge(full)[:, :4]).abs().max() < 1e-12


@pytest.mark.parametrize("mmax", [None, 2])
def test_grid_projections_equal_e3nn(mmax: int | None) -> None:
    """The two-step (latitude, longitude) projections equal e3nn's dense ToS2Grid and FromS2Grid, also
    restricted to orders |m| <= mmax (coefficients placed in the full layout, scaled as the layout says)."""
    from potentials.equiformer_v2.layers import S2Grid

    lmax, res = 4, 10
    layout = CoefficientLayout(lmax, mmax) if mmax is not None else None
    grid = S2Grid(lmax, res, layout)
    with default_dtype(torch.float64):  # e3nn computes its quadrature weights in the default dtype
        to_e3nn = o3.ToS2Grid(lmax, (res, res), normalization="component", dtype=torch.float64)
        from_e3nn = o3.FromS2Grid((res, res), lmax, normalization="component", dtype=torch.float64)
    n_coeff = layout.n_reduced if layout is not None else (lmax + 1) ** 2
    x = torch.randn(3, n_coeff, 2, dtype=torch.float64)
    full = torch.zeros(3, (lmax + 1) ** 2, 2, dtype=torch.float64)
    scale = layout.truncation_rescale()[:, None] if layout is not None else 1.0
    full[:, layout.reduced if layout is not None else slice(None)] = x * scale
    expected = to_e3nn(full.transpose(1, 2))  # (3, C, beta, alpha)
    ours = grid.to_grid(x).view(3, res, res, 2).permute(0, 3, 2, 1)  # points ordered (alpha, beta)
    assert (ours - expected).abs().max() < 1e-12
    values = torch.randn(3, res * res, 2, dtype=torch.float64)
    back = from_e3nn(values.view(3, res, res, 2).permute(0, 3, 2, 1))  # (3, C, (L+1)^2)
    back = back.transpose(1, 2)[:, layout.reduced if layout is not None else slice(None)] * scale
    assert (grid.from_grid(values) - back).abs().max() < 1e-12


def test_grid_maps_in_blocks_match_the_whole_grid(monkeypatch: pytest.MonkeyPatch) -> None:
    """The blocked S2-grid SiLU and pointwise maps equal projecting the whole grid; the SiLU's
    recomputing backward pass (and the double backward used when training on forces) and the
    pointwise map's derivatives match finite differences."""
    from potentials.equiformer_v2 import layers

    layout = CoefficientLayout(3, 2)
    grid = layers.S2Grid(3, 8, layout)
    x = torch.randn(7, layout.n_reduced, 2, dtype=torch.float64, requires_grad=True)
    mix = torch.randn(2, 2, dtype=torch.float64)

    def channel_mlp(values: torch.Tensor) -> torch.Tensor:
        return torch.tanh(torch.nn.functional.silu(values) @ mix)

    whole_silu = grid.from_grid(torch.nn.functional.silu(grid.to_grid(x)))
    whole_mlp = grid.from_grid(channel_mlp(grid.to_grid(x)))
    monkeypatch.setitem(layers._GRID_BLOCK, "cpu", 2 * 64 * 2)  # two rows per block: four blocks
    assert (grid.silu(x) - whole_silu).abs().max() < 1e-14
    assert (grid.pointwise(x, channel_mlp) - whole_mlp).abs().max() < 1e-14
    assert torch.autograd.gradcheck(grid.silu, (x,))
    assert torch.autograd.gradgradcheck(grid.silu, (x,))
    assert torch.autograd.gradgradcheck(lambda v: grid.pointwise(v, channel_mlp), (x,))


def test_grid_silu_derivative_is_differentiable_in_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The grid SiLU's derivative g_x(x, g_y) = A^T [SiLU'(A x) (B^T g_y)], a blockwise function of
    its own, has derivatives with respect to x and g_y that match finite differences (the second
    derivatives of training on forces); it is differentiable once only, and says so."""
    from potentials.equiformer_v2 import layers

    layout = CoefficientLayout(2, 1)
    grid = layers.S2Grid(2, 6, layout)
    matrices = [grid.constants.get(name, torch.zeros((), dtype=torch.float64)) for name in layers._NAMES]
    monkeypatch.setitem(layers._GRID_BLOCK, "cpu", 2 * 36 * 3)  # two rows per block: three blocks
    x, grad_y = (torch.randn(5, layout.n_reduced, 3, dtype=torch.float64, requires_grad=True) for _ in range(2))

    def derivative(x: torch.Tensor, grad_y: torch.Tensor) -> torch.Tensor:
        return layers._GridSiLUBackward.apply(x, grad_y, *matrices)

    expected = torch.autograd.grad(grid.from_grid(torch.nn.functional.silu(grid.to_grid(x))), x, grad_y)[0]
    assert (derivative(x, grad_y) - expected).abs().max() < 1e-14
    assert torch.autograd.gradcheck(derivative, (x, grad_y))
    first = torch.autograd.grad(derivative(x, grad_y).square().sum(), x, create_graph=True)[0]
    with pytest.raises(RuntimeError, match="differentiate twice"):
        first.sum().backward()


def test_gaussian_basis_derivatives_are_written_out_exactly() -> None:
    """The distance basis, whose first and second derivatives are written out, has the formula's
    values and derivatives that match finite differences; it is differentiable twice only."""
    from potentials.equiformer_v2.layers import GaussianBasis

    basis = GaussianBasis(cutoff=5.0, num=12)
    d = torch.tensor([0.3, 1.7, 2.26, 4.9, 5.5], dtype=torch.float64, requires_grad=True)
    offsets = torch.linspace(0.0, 5.0, 12, dtype=torch.float64)
    assert torch.equal(basis(d), torch.exp(basis.coeff * (d[:, None] - offsets) ** 2))
    assert torch.autograd.gradcheck(basis, (d,))
    assert torch.autograd.gradgradcheck(basis, (d,))
    first = torch.autograd.grad(basis(d).square().sum(), d, create_graph=True)[0]
    second = torch.autograd.grad(first.square().sum(), d, create_graph=True)[0]
    with pytest.raises(RuntimeError, match="differentiate twice"):
        second.sum().backward()


def test_force_training_gradients_match_plain_autograd() -> None:
    """The parameter gradients of an energy + force loss (second derivatives through every grid SiLU
    and distance basis, whose derivatives are written out) equal those of the same model in plain
    autograd: the SiLU on the whole grid, the basis by its formula."""
    from potentials.equiformer_v2.layers import GaussianBasis, S2Grid

    systems = SystemBatch.from_atoms([slab(), bulk_cell()], dtype=torch.float64, device="cpu")
    m = model(lmax=2, mmax=1).double()

    def gradients() -> list[torch.Tensor]:
        out = predict(m, systems, stress=False, create_graph=True)
        loss = out.energy.square().sum() + out.forces.square().sum()
        return torch.autograd.grad(loss, list(m.parameters()), allow_unused=True, materialize_grads=True)

    def whole_grid_silu(grid: S2Grid, x: torch.Tensor) -> torch.Tensor:  # no edges (isolated atoms): no grid
        return grid.from_grid(torch.nn.functional.silu(grid.to_grid(x))) if len(x) else x

    def gaussians(basis: GaussianBasis, d: torch.Tensor) -> torch.Tensor:
        return torch.exp(basis.coeff * (d[:, None] - basis.constants.get("offsets", d)) ** 2)

    written_out = gradients()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(S2Grid, "silu", whole_grid_silu)
        patch.setattr(GaussianBasis, "forward", gaussians)
        plain = gradients()
    scale = max(g.abs().max() for g in plain)
    assert scale > 0 and max((a - b).abs().max() for a, b in zip(written_out, plain)) < 1e-12 * scale


@pytest.mark.parametrize("norm", NORMS)
def test_norms_and_degree_wise_linear_are_equivariant(norm: str) -> None:
    torch.set_default_dtype(torch.float64)
    try:
        d = WignerD(3)(o3.rand_matrix(1, dtype=torch.float64))[0]
        x = torch.randn(5, 16, 4)
        for layer in (EquivariantNorm(norm, 3, 4), SO3Linear(4, 6, 3)):
            with torch.no_grad():
                for p in layer.parameters():
                    p.add_(0.3 * torch.randn_like(p))
            assert (layer(torch.einsum("ij,njc->nic", d, x)) - torch.einsum("ij,njc->nic", d, layer(x))).abs().max() < 1e-12
    finally:
        torch.set_default_dtype(torch.float32)


def test_conservative_forces_and_stress_are_derivatives() -> None:
    calc = EquiCalculator(model(), device="cpu", dtype="float64")
    assert_forces_match_fd(slab(), calc, eps=1e-5, atol=1e-7, rtol=1e-5)
    assert_stress_match_fd(bulk_cell(), calc, eps=1e-6, atol=1e-8, rtol=1e-5)


def test_activation_checkpointing_changes_nothing_but_memory() -> None:
    """Recomputing every block in the backward pass gives the same energy, forces, stress and
    second derivatives (training on forces) as keeping the activations."""
    systems = SystemBatch.from_atoms([slab(), bulk_cell()], dtype=torch.float64, device="cpu")
    plain, recomputed = model().double(), model(activation_checkpointing=True).double()
    a = predict(plain, systems, create_graph=True)
    b = predict(recomputed, systems, create_graph=True)
    for x, y in ((a.energy, b.energy), (a.forces, b.forces), (a.stress, b.stress)):
        assert (x - y).abs().max() < 1e-12
    grads = [torch.autograd.grad(p.forces.square().sum(), m.blocks[0].attention.conv_1.fc_m0.weight)
             for p, m in ((a, plain), (b, recomputed))]
    assert (grads[0][0] - grads[1][0]).abs().max() < 1e-12 and grads[0][0].abs().max() > 0


def test_conservative_symmetries() -> None:
    """Translations and permutations are exact; rotations hold up to the S2 grid's sampling error."""
    calc = EquiCalculator(model(), device="cpu", dtype="float64")
    rng = np.random.default_rng(0)
    errors = [assert_invariant(slab(), calc, rng=rng, rtol=1e-5, reflections=False) for _ in range(3)]
    atoms = slab()
    atoms.calc = calc
    energy = atoms.get_potential_energy()
    moved = atoms[rng.permutation(len(atoms))]
    moved.positions += [0.3, -1.2, 0.7]
    moved.calc = calc
    assert abs(moved.get_potential_energy() - energy) < 1e-10
    assert max(errors) > 0  # the grid error is real, so this test would notice if it vanished or grew


def test_conservative_energy_is_extensive_and_smooth() -> None:
    calc = EquiCalculator(model(), device="cpu", dtype="float64")
    assert_extensive(bulk_cell(), calc, repeat=(2, 1, 1), rtol=1e-9)
    atoms = Atoms("OCu", positions=[[0, 0, 0], [0, 0, 0]])
    atoms.calc = calc

    def energy(z: float) -> float:
        atoms.positions[1] = [0.1, 0.2, z]
        return atoms.get_potential_energy()

    r = lambda z: np.hypot(np.hypot(0.1, 0.2), z)  # noqa: E731
    z_cut = np.sqrt(5.0**2 - 0.05)
    assert abs(r(z_cut) - 5.0) < 1e-12
    assert abs(energy(z_cut - 1e-7) - energy(z_cut + 1e-7)) < 1e-10
    assert abs(energy(2.5) - energy(z_cut + 1.0)) > 1e-4


def test_isolated_atom_has_its_reference_energy() -> None:
    m = model(atomic_energies=(-13.6, -1030.0, -2040.0, -45000.0))
    atoms = Atoms("C", positions=[[0.0, 0.0, 0.0]])
    atoms.calc = EquiCalculator(m, device="cpu", dtype="float64")
    assert atoms.get_potential_energy() == pytest.approx(-1030.0, abs=1e-9)


def test_compatible_mode_uses_the_direct_force_head() -> None:
    m = model("compatible", energy_mean=-0.75, energy_std=2.9, max_neighbors=12).double()
    assert m.direct_forces
    calc = EquiCalculator(m, device="cpu", dtype="float64")
    atoms = slab()
    atoms.calc = calc
    forces = atoms.get_forces()
    assert "stress" not in calc.results  # no backward pass for a direct-force model unless asked
    systems = SystemBatch.from_atoms(atoms, dtype=torch.float64, device="cpu")
    out = predict(m, systems, forces=True, stress=True)
    assert np.allclose(forces, out.forces.detach().numpy())
    assert np.allclose(atoms.get_stress(voigt=False), out.stress[0].detach().numpy(), rtol=1e-10, atol=1e-12)
    assert np.array_equal(atoms.get_forces(), forces)
    atoms.positions[0, 2] += 0.01  # once stress has been asked for, it comes with every call
    atoms.get_forces()
    assert "stress" in calc.results
    conservative = -torch.autograd.functional.jacobian(
        lambda pos: predict(m, SystemBatch(pos, systems.numbers, systems.cell, systems.pbc, systems.batch),
                            forces=False, stress=False).energy.sum(),
        systems.positions,
    )
    assert (conservative - out.forces).abs().max() > 1e-3  # direct forces are not -dE/dr
    rng = np.random.default_rng(1)
    assert_invariant(slab(), calc, rng=rng, rtol=1e-5, reflections=False)


def test_energy_does_not_depend_on_the_frame_roll_beyond_grid_error() -> None:
    """Random second axes for the edge frames (as the reference draws) change the energy only slightly."""
    from potentials.equiformer_v2 import model as model_module

    m = model().double()
    systems = SystemBatch.from_atoms(slab(), dtype=torch.float64, device="cpu")
    base = predict(m, systems, forces=False, stress=False).energy.item()
    original = model_module.edge_frames
    try:
        model_module.edge_frames = lambda v: original(v, torch.randn_like(v))
        rolled = predict(m, systems, forces=False, stress=False).energy.item()
    finally:
        model_module.edge_frames = original
    assert 0 < abs(rolled - base) < 1e-5 * max(abs(base), 1.0)


@pytest.mark.slow
def test_conservative_nve_conserves_energy() -> None:
    """100 steps of velocity Verlet in float64 with random weights on a periodic slab + adsorbates."""
    from workflows import run_md

    atoms = slab()
    m = model()
    with torch.no_grad():
        m.energy_head.linear_2.weight.mul_(5.0)  # forces of O(0.1) eV/Å, so the atoms really move
    atoms.calc = EquiCalculator(m, device="cpu", dtype="float64")
    summary = run_md(atoms, steps=100, timestep_fs=1.0, temperature_K=300.0, ensemble="nve", seed=3)
    assert summary.max_drift_eV_per_atom < 1e-4
    assert abs(summary.temperature_K[1] - summary.temperature_K[0]) > 5.0
