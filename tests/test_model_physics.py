"""Physics every energy model must obey, checked through the calculator.

Every architecture and mode in ``ALL_MODELS`` gets the checks every model must pass whatever its
design (stress is the strain derivative of the energy on the three awkward cell types, a batch gives
each system what it gets alone); a new model gets them by adding its factory there. The exact
checks (finite-difference forces, invariance to 1e-10, extensivity) run on LJ and EGNN here and on
the other architectures in their own test files.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from ase import Atoms

from equicalc import EquiCalculator
from equicalc.testing import (
    STRESS_CELLS,
    assert_batch_matches_single,
    assert_extensive,
    assert_forces_match_fd,
    assert_invariant,
    assert_stress_match_fd,
    mixed_systems,
)
from potentials import (
    EGNN,
    SAKE,
    EGNNConfig,
    EquiformerV2,
    EquiformerV2Config,
    LennardJones,
    LennardJonesConfig,
    Potential,
    SAKEConfig,
)
from tests.conftest import rattled_lj_crystal


def lj_model() -> LennardJones:
    return LennardJones(LennardJonesConfig(sigma=1.0, epsilon=1.0, cutoff=2.5, smooth=True))


def egnn_model() -> EGNN:
    torch.manual_seed(1)
    config = EGNNConfig(cutoff=2.5, elements=(1, 6, 18), hidden=16, layers=3, atomic_energies=(-1.0, -2.0, -0.5))
    return EGNN(config)


def sake_model() -> SAKE:
    """SAKE with every switch at its default, its readout scaled up so forces are O(0.1-1) eV/Å."""
    torch.manual_seed(2)
    config = SAKEConfig(cutoff=4.0, elements=(1, 8, 29), hidden=8, heads=2, layers=2, num_rbf=8,
                        avg_num_neighbors=8.0, atomic_energies=(-1.0, -5.0, -3.0))
    model = SAKE(config)
    with torch.no_grad():
        model.readout[-1].weight.mul_(10.0)
    return model


#: the shape of issue 11's compatible-mode stress report (L = 2, M = 1, two layers, 4.5 Å, H O Cu),
#: with small widths and a coarse S2 grid to keep the tests fast
EQUIFORMER_V2 = dict(cutoff=4.5, elements=(1, 8, 29), num_layers=2, lmax=2, mmax=1, sphere_channels=16,
                     attn_hidden_channels=16, num_heads=2, attn_alpha_channels=8, attn_value_channels=4,
                     ffn_hidden_channels=16, edge_channels=16, num_distance_basis=32, grid_resolution=8)


def equiformer_v2_conservative() -> EquiformerV2:
    torch.manual_seed(3)
    return EquiformerV2(EquiformerV2Config(**EQUIFORMER_V2, mode="conservative"))


def equiformer_v2_compatible() -> EquiformerV2:
    """Direct forces, outputs de-normalised per system (E = 2.9 E_model - 0.75 eV) and a neighbour
    cap of 60 that the small cell reaches."""
    torch.manual_seed(3)
    return EquiformerV2(EquiformerV2Config(**EQUIFORMER_V2, mode="compatible", max_neighbors=60,
                                           energy_mean=-0.75, energy_std=2.9))


MODELS = {"lj": lj_model, "egnn": egnn_model}
#: every architecture and mode (SAKE with its switches' defaults)
ALL_MODELS: dict[str, Callable[[], Potential]] = {
    **MODELS,
    "sake": sake_model,
    "equiformer_v2_conservative": equiformer_v2_conservative,
    "equiformer_v2_compatible": equiformer_v2_compatible,
}
SYSTEMS = {"bulk": (True, True, True), "slab": (True, True, False), "molecule": (False, False, False)}


def system(pbc: tuple[bool, bool, bool], seed: int = 0) -> Atoms:
    rng = np.random.default_rng(seed)
    atoms = rattled_lj_crystal(rng, pbc=pbc, repeat=(2, 2, 1) if pbc[2] is False else (2, 2, 2))
    atoms.set_cell(atoms.cell.array + np.triu(rng.uniform(-0.1, 0.1, (3, 3)), 1), scale_atoms=True)
    atoms.numbers = rng.choice([1, 6, 18], len(atoms))
    return atoms


@pytest.fixture(params=list(MODELS))
def calc(request: pytest.FixtureRequest) -> EquiCalculator:
    return EquiCalculator(MODELS[request.param](), device="cpu", dtype="float64")


@pytest.mark.parametrize("kind", list(SYSTEMS))
def test_forces_match_finite_differences(calc: EquiCalculator, kind: str) -> None:
    assert_forces_match_fd(system(SYSTEMS[kind]), calc, eps=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["bulk", "slab"])
def test_stress_matches_finite_difference_calculator(calc: EquiCalculator, kind: str) -> None:
    assert_stress_match_fd(system(SYSTEMS[kind]), calc, eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("cell", list(STRESS_CELLS))
@pytest.mark.parametrize("name", list(ALL_MODELS))
@pytest.mark.filterwarnings("ignore:model .* predicts forces with a direct head")
def test_stress_is_the_strain_derivative_of_the_energy(name: str, cell: str) -> None:
    """Every model and mode, on a triclinic cell smaller than the cutoff, a skewed slab and a 1-D
    wire: the stress returned equals finite differences of the energy returned, to 1e-6 of its
    largest component (a direct-force model included: its stress is still dE/dε)."""
    model = ALL_MODELS[name]()
    atoms = STRESS_CELLS[cell](model.elements, model.cutoff)
    calc = EquiCalculator(model, device="cpu", dtype="float64")
    probe = atoms.copy()
    probe.calc = calc
    assert np.abs(probe.get_stress()).max() > 1e-6  # a stress that is there to get wrong
    assert_stress_match_fd(atoms, calc, eps=1e-5, atol=1e-12, rtol=1e-6)


@pytest.mark.parametrize("name", list(ALL_MODELS))
def test_batch_gives_each_system_what_it_gets_alone(name: str) -> None:
    """A molecule, a small cell, a slab, a larger bulk cell and a wire of different sizes in one batch."""
    model = ALL_MODELS[name]().double()
    assert_batch_matches_single(mixed_systems(model.elements, model.cutoff), model, rtol=1e-10)


@pytest.mark.parametrize("kind", list(SYSTEMS))
def test_energy_invariant_forces_equivariant(calc: EquiCalculator, kind: str) -> None:
    rng = np.random.default_rng(2)
    for _ in range(3):
        assert_invariant(system(SYSTEMS[kind]), calc, rng=rng, rtol=1e-10)


def test_float32_invariance(calc: EquiCalculator) -> None:
    calc32 = EquiCalculator(calc.model, device="cpu", dtype="float32")
    assert_invariant(system(SYSTEMS["bulk"]), calc32, rng=np.random.default_rng(3), rtol=1e-5)


@pytest.mark.parametrize("kind", ["bulk", "slab"])
def test_supercell_is_extensive(calc: EquiCalculator, kind: str) -> None:
    repeat = (2, 2, 2) if kind == "bulk" else (2, 2, 1)
    assert_extensive(system(SYSTEMS[kind]), calc, repeat=repeat, rtol=1e-10)


def test_per_atom_energies_sum_to_total(calc: EquiCalculator) -> None:
    atoms = system(SYSTEMS["bulk"])
    atoms.calc = calc
    assert atoms.get_potential_energies().sum() == pytest.approx(atoms.get_potential_energy(), rel=1e-12)


def test_egnn_energy_is_smooth_at_the_cutoff() -> None:
    """Move Ar across the cutoff of H: energy and force stay continuous, with no kink."""
    calc = EquiCalculator(egnn_model(), device="cpu", dtype="float64")
    cutoff = 2.5
    atoms = Atoms("HCAr", positions=[[0, 0, 0], [1.1, 0, 0], [0, 0, 0]])

    def energy_and_force(z: float) -> tuple[float, float]:
        atoms.positions[2] = [0, 0, z]
        atoms.calc = calc
        return atoms.get_potential_energy(), atoms.get_forces()[2, 2]

    e_in, f_in = energy_and_force(cutoff - 1e-6)
    e_out, f_out = energy_and_force(cutoff + 1e-6)
    e_far, f_far = energy_and_force(10.0)
    assert abs(e_in - e_out) < 1e-9 and abs(f_in - f_out) < 1e-6
    # Ar stays beyond the cutoff of C (|z| > 2.5 means |r - r_C| > 2.7), so only the H-Ar edge crosses
    assert f_far == 0.0
    steps = [energy_and_force(z)[0] for z in np.linspace(cutoff - 0.05, cutoff + 0.05, 41)]
    assert np.abs(np.diff(steps, 2)).max() < 1e-6  # no kink anywhere across the cutoff


def test_egnn_envelope_is_not_trivially_zero() -> None:
    """Guard for the smoothness test: the third atom does change the energy inside the cutoff."""
    calc = EquiCalculator(egnn_model(), device="cpu", dtype="float64")
    atoms = Atoms("HCAr", positions=[[0, 0, 0], [1.1, 0, 0], [0, 0, 1.5]])
    atoms.calc = calc
    near = atoms.get_potential_energy()
    atoms.positions[2] = [0, 0, 10.0]
    assert abs(near - atoms.get_potential_energy()) > 1e-4


def test_float32_network_keeps_float64_geometry() -> None:
    """A float32 network far from the origin: the calculator computes edge vectors in float64 and
    rounds them once, so a translation by 10^5 Å changes nothing beyond float32 rounding. The same
    network fed float32 coordinates (spaced ~0.008 Å out there) gets visibly wrong forces."""
    from equicalc import SystemBatch, predict

    model = egnn_model().float()
    atoms = system((False, False, False))
    far = atoms.copy()
    far.positions += [1.0e5, -3.0e5, 2.0e5]
    atoms.calc, far.calc = (EquiCalculator(model, device="cpu", dtype="float32") for _ in range(2))
    assert abs(far.get_potential_energy() - atoms.get_potential_energy()) <= 1e-6 * abs(atoms.get_potential_energy())
    scale = np.abs(atoms.get_forces()).max()
    np.testing.assert_allclose(far.get_forces(), atoms.get_forces(), atol=1e-5 * scale)
    rounded = predict(model, SystemBatch.from_atoms(far, dtype=torch.float32, device="cpu"), stress=False).forces
    assert np.abs(rounded.numpy() - atoms.get_forces()).max() > 1e-3 * scale
