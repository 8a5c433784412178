"""SAKE and every ablation switch: invariance, finite differences, extensivity, smoothness, NVE."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from equicalc import EquiCalculator
from equicalc.testing import assert_extensive, assert_forces_match_fd, assert_invariant, assert_stress_match_fd
from potentials import SAKE, ConfigError, SAKEConfig
from potentials.sake import SAKELayer

VARIANTS = {
    "full": {},
    "linear": {"coefficients": "linear"},
    "polynomial": {"coefficients": "polynomial"},
    "mlp": {"coefficients": "mlp"},
    "no_velocity": {"update": "no_velocity"},
    "frozen": {"update": "frozen"},
    "no_spatial": {"spatial_attention": False},
    "no_semantic": {"semantic_attention": False},
}
CUTOFF = 4.0


def sake(seed: int = 0, **switches) -> SAKE:
    """A small random SAKE whose output is scaled up so forces are O(0.1-1) eV/Å."""
    torch.manual_seed(seed)
    config = SAKEConfig(cutoff=CUTOFF, elements=(1, 8, 29), hidden=8, heads=2, layers=2, num_rbf=8,
                        avg_num_neighbors=8.0, atomic_energies=(-1.0, -5.0, -3.0), **switches)
    model = SAKE(config)
    with torch.no_grad():
        model.readout[-1].weight.mul_(300.0)
    return model


def periodic() -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.set_cell(atoms.cell.array + np.array([[0, 0.2, 0.1], [0, 0, 0.15], [0, 0, 0]]), scale_atoms=True)
    atoms.rattle(0.1, seed=3)
    atoms.numbers[[0, 2]] = [8, 1]
    return atoms


def molecule() -> Atoms:
    rng = np.random.default_rng(5)
    return Atoms("CuOH2OCu", positions=rng.uniform(0, 3.0, (6, 3)))


@pytest.fixture(params=list(VARIANTS))
def variant(request: pytest.FixtureRequest) -> str:
    return request.param


def test_forces_and_stress_equal_finite_differences(variant: str) -> None:
    calc = EquiCalculator(sake(**VARIANTS[variant]), device="cpu", dtype="float64")
    assert np.abs(_forces(periodic(), calc)).max() > 1e-2  # the model is not trivially flat
    assert_forces_match_fd(periodic(), calc, eps=1e-5, atol=1e-7, rtol=1e-6)
    assert_forces_match_fd(molecule(), calc, eps=1e-5, atol=1e-7, rtol=1e-6)
    assert_stress_match_fd(periodic(), calc, eps=1e-6, atol=1e-8, rtol=1e-6)


def _forces(atoms: Atoms, calc: EquiCalculator) -> np.ndarray:
    atoms.calc = calc
    return atoms.get_forces()


@pytest.mark.parametrize(("dtype", "rtol"), [("float64", 1e-10), ("float32", 1e-5)])
def test_invariance(variant: str, dtype: str, rtol: float) -> None:
    calc = EquiCalculator(sake(**VARIANTS[variant]), device="cpu", dtype=dtype)
    rng = np.random.default_rng(1)
    for atoms in (periodic(), molecule()):
        assert_invariant(atoms, calc, rng=rng, rtol=rtol)


def test_supercell_is_extensive(variant: str) -> None:
    calc = EquiCalculator(sake(**VARIANTS[variant]), device="cpu", dtype="float64")
    assert_extensive(periodic(), calc, repeat=(2, 2, 2), rtol=1e-10)


def test_energy_is_smooth_across_the_cutoff(variant: str) -> None:
    calc = EquiCalculator(sake(**VARIANTS[variant]), device="cpu", dtype="float64")
    atoms = Atoms("OHCu", positions=[[0, 0, 0], [0.97, 0, 0], [0, 0, 0]])

    def energy(z: float) -> float:
        atoms.positions[2] = [0, 0, z]  # Cu approaches O along z; it stays beyond the cutoff of H
        atoms.calc = calc
        return atoms.get_potential_energy()

    scan = np.array([energy(z) for z in np.linspace(CUTOFF - 0.02, CUTOFF + 0.02, 41)])
    assert abs(energy(CUTOFF - 1e-7) - energy(CUTOFF + 1e-7)) < 1e-10
    assert np.abs(np.diff(scan, 2)).max() < 1e-6  # step 1e-3 Å: no kink, i.e. no force jump above ~1e-3 eV/Å
    assert abs(energy(2.0) - energy(CUTOFF + 0.5)) > 1e-3  # the Cu atom does interact inside the cutoff


def test_isolated_atom_has_its_reference_energy() -> None:
    calc = EquiCalculator(sake(), device="cpu", dtype="float64")
    atoms = Atoms("O", positions=[[1.0, 2.0, 3.0]])
    atoms.calc = calc
    assert atoms.get_potential_energy() == pytest.approx(-5.0, abs=1e-12)


def _layer_inputs(config: SAKEConfig):
    torch.manual_seed(0)
    layer = SAKELayer(config).double()
    h = torch.randn(3, config.hidden, dtype=torch.float64)
    edge_index = torch.tensor([[0, 0, 1, 1, 2, 2], [1, 2, 0, 2, 0, 1]])
    positions = torch.randn(3, 3, dtype=torch.float64)
    vectors = positions[edge_index[1]] - positions[edge_index[0]]
    return layer, h, vectors, torch.ones(6, dtype=torch.float64), edge_index


@pytest.mark.parametrize("update", ["velocity", "no_velocity", "frozen"])
def test_update_switch_semantics(update: str) -> None:
    """frozen: edge vectors pass through; no_velocity: the input velocity is ignored; velocity: it is not."""
    config = SAKEConfig(cutoff=5.0, elements=(1,), hidden=8, heads=2, num_rbf=4, update=update)
    layer, h, vectors, envelope, edge_index = _layer_inputs(config)
    outs = [layer(h, vectors, torch.full((3, 3), v, dtype=torch.float64), envelope, edge_index) for v in (0.0, 0.5)]
    if update == "frozen":
        assert torch.equal(outs[0][1], vectors) and torch.equal(outs[1][1], vectors)
    else:
        assert not torch.allclose(outs[0][1], vectors)
        assert torch.allclose(outs[0][2], outs[1][2]) == (update == "no_velocity")
    assert torch.allclose(outs[0][0], outs[1][0])  # h never depends on the incoming velocity


def test_no_spatial_attention_freezes_positions_and_no_semantic_is_uniform() -> None:
    config = SAKEConfig(cutoff=5.0, elements=(1,), hidden=8, heads=2, num_rbf=4, spatial_attention=False)
    layer, h, vectors, envelope, edge_index = _layer_inputs(config)
    assert torch.equal(layer(h, vectors, torch.zeros(3, 3, dtype=torch.float64), envelope, edge_index)[1], vectors)
    uniform = SAKELayer(SAKEConfig(cutoff=5.0, elements=(1,), hidden=8, heads=2, semantic_attention=False))
    assert uniform.attention is None


def test_bad_switch_values() -> None:
    with pytest.raises(ConfigError, match="coefficients must be one of"):
        SAKEConfig(cutoff=5.0, elements=(1,), coefficients="cubic")
    with pytest.raises(ConfigError, match="update must be one of"):
        SAKEConfig(cutoff=5.0, elements=(1,), update="leapfrog")


@pytest.mark.slow
def test_nve_conserves_energy() -> None:
    """1,000 steps of velocity Verlet in float64 with random weights on periodic Cu/O/H."""
    from workflows import run_md

    atoms = periodic().repeat((2, 1, 1))
    atoms.calc = EquiCalculator(sake(), device="cpu", dtype="float64")
    summary = run_md(atoms, steps=1000, timestep_fs=0.5, temperature_K=300.0, ensemble="nve", seed=2)
    assert summary.max_drift_eV_per_atom < 1e-4
    assert abs(summary.temperature_K[1] - summary.temperature_K[0]) > 5.0  # energy really flows between terms
