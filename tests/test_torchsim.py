"""TorchSim adapter: our predictions through TorchSim's model interface, its FIRE and MD with our models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import add_adsorbate, bulk, fcc111, molecule
from ase.constraints import FixAtoms, FixBondLength
from ase.filters import FrechetCellFilter
from ase.optimize import FIRE

from equicalc import EquiCalculator
from potentials import EGNN, EGNNConfig, EquiformerV2, EquiformerV2Config

ts = pytest.importorskip("torch_sim")
from torch_sim.models.interface import validate_model_outputs  # noqa: E402

from workflows.torchsim import EquicalcModel, relax_with_torchsim  # noqa: E402

#: a small direct-force EquiformerV2 (reference-compatible mode) knowing H, O and Cu
DIRECT = dict(cutoff=4.5, elements=(1, 8, 29), num_layers=1, lmax=2, mmax=1, sphere_channels=8,
              attn_hidden_channels=8, num_heads=2, attn_alpha_channels=4, attn_value_channels=4,
              ffn_hidden_channels=8, edge_channels=8, num_distance_basis=16, grid_resolution=8,
              mode="compatible", max_neighbors=30)


def direct_model() -> EquiformerV2:
    torch.manual_seed(3)
    return EquiformerV2(EquiformerV2Config(**DIRECT))


def slab(layers: int, adsorbate: str, seed: int) -> Atoms:
    """A rattled Cu(111) 2x2 slab with an adsorbate, its lower layers fixed, fully periodic (vacuum 6 Å)."""
    atoms = fcc111("Cu", size=(2, 2, layers), vacuum=6.0)
    add_adsorbate(atoms, adsorbate, 1.9, "fcc")
    atoms.set_constraint(FixAtoms(indices=[a.index for a in atoms if a.tag > 1]))
    atoms.pbc = True
    atoms.rattle(0.05, seed=seed)
    return atoms


def mixed_systems() -> list[Atoms]:
    """Triclinic bulk Cu, a slab with an adsorbate and a water molecule in a box, all periodic."""
    rng = np.random.default_rng(0)
    crystal = bulk("Cu", "fcc", a=3.6).repeat(2)
    crystal.set_cell(crystal.cell.array + np.triu(rng.uniform(-0.3, 0.3, (3, 3)), 1), scale_atoms=True)
    crystal.rattle(0.05, seed=1)
    water = molecule("H2O", cell=[[9.0, 0.0, 0.0], [1.5, 8.0, 0.0], [0.5, 0.7, 10.0]], pbc=True)
    water.positions += 4.0
    return [crystal, slab(3, "O", 2), water]


@pytest.mark.filterwarnings("ignore:model .* predicts forces with a direct head")
@pytest.mark.parametrize("name", ["sake-emt-oc", "direct"])
def test_adapter_equals_the_calculator(name: str) -> None:
    """One TorchSim state of three different systems gives what the calculator gives each alone."""
    spec = direct_model() if name == "direct" else name
    model = EquicalcModel(spec, device="cpu")
    systems = mixed_systems()
    state = ts.io.atoms_to_state(systems, model.device, model.dtype)
    positions = state.positions.clone()
    out = model(state)
    assert torch.equal(state.positions, positions)
    assert out["energy"].dtype == out["forces"].dtype == out["stress"].dtype == torch.float64
    forces = out["forces"].numpy()
    start = 0
    for i, atoms in enumerate(systems):
        atoms.calc = EquiCalculator(spec, device="cpu")
        assert float(out["energy"][i]) == pytest.approx(atoms.get_potential_energy(), abs=1e-10)
        np.testing.assert_allclose(forces[start:start + len(atoms)], atoms.get_forces(apply_constraint=False),
                                   atol=1e-10)
        np.testing.assert_allclose(out["stress"][i].numpy(), atoms.get_stress(voigt=False), atol=1e-10)
        start += len(atoms)


def test_molecules_without_periodicity() -> None:
    """A non-periodic state: energies and forces as the calculator's; asking for stress is refused."""
    systems = [molecule("H2O"), molecule("H2O2")]
    model = EquicalcModel("sake-emt-oc", device="cpu", compute_stress=False)
    state = ts.io.atoms_to_state(systems, model.device, model.dtype)
    out = model(state)
    for i, atoms in enumerate(systems):
        atoms.calc = EquiCalculator("sake-emt-oc", device="cpu")
        assert float(out["energy"][i]) == pytest.approx(atoms.get_potential_energy(), abs=1e-10)
    np.testing.assert_allclose(out["forces"].numpy(), np.concatenate([a.get_forces() for a in systems]), atol=1e-10)
    with pytest.raises(ValueError, match=r"system\(s\) \[0, 1\] have no periodic axis"):
        EquicalcModel("sake-emt-oc", device="cpu")(state)


def test_torchsim_model_validator() -> None:
    """TorchSim 0.3.0's own interface check (input untouched, keys, shapes, batched == alone)."""
    torch.manual_seed(0)
    egnn = EGNN(EGNNConfig(cutoff=4.0, elements=(14, 26), hidden=8, layers=2, atomic_energies=(-5.0, -8.0)))
    validate_model_outputs(EquicalcModel(egnn, device="cpu"), torch.device("cpu"), torch.float64)


def test_torchsim_cell_relaxation_matches_ase() -> None:
    """TorchSim's FIRE + Frechet cell filter, fed our stress, relaxes compressed argon to the volume
    ASE's FIRE + FrechetCellFilter finds with our calculator: the stress's sign and layout are TorchSim's."""
    atoms = bulk("Ar", "fcc", a=5.0, cubic=True)
    atoms.rattle(0.02, seed=3)
    model = EquicalcModel("lj-argon", device="cpu")
    relaxed = ts.optimize(
        atoms, model, optimizer=ts.optimizers.frechet_cell_fire, max_steps=400,
        convergence_fn=ts.generate_force_convergence_fn(1e-4, include_cell_forces=True),
    )
    reference = atoms.copy()
    reference.calc = EquiCalculator("lj-argon", device="cpu")
    FIRE(FrechetCellFilter(reference), logfile=None).run(fmax=1e-4, steps=400)
    volume = float(torch.linalg.det(relaxed.cell[0]))
    assert volume > 1.1 * atoms.get_volume()  # it expanded
    assert volume == pytest.approx(reference.get_volume(), rel=1e-4)


def test_torchsim_nve_conserves_energy() -> None:
    """Velocity Verlet in TorchSim with our LJ argon: forces are -dE/dr in TorchSim's units."""
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(2)
    model = EquicalcModel("lj-argon", device="cpu", compute_stress=False)
    state = ts.io.atoms_to_state(atoms, model.device, model.dtype)
    units = ts.units.MetalUnits
    init, step = ts.nve(model, dt=torch.tensor(0.005 * units.time, dtype=torch.float64),
                        kT=torch.tensor(60.0 * units.temperature, dtype=torch.float64), seed=1)
    state = init(state)

    def total() -> float:
        kinetic = ts.calc_kinetic_energy(masses=state.masses, momenta=state.momenta)
        return float(state.energy.sum() + kinetic)

    first = total()
    for _ in range(100):
        state = step(state)
    assert abs(total() - first) / len(atoms) < 1e-5  # eV/atom over 0.5 ps of 5 fs steps


def ase_fire(atoms: Atoms, steps: int) -> tuple[Atoms, int]:
    atoms = atoms.copy()
    atoms.calc = EquiCalculator("sake-emt-oc", device="cpu")
    optimizer = FIRE(atoms, logfile=None)
    optimizer.run(fmax=0.05, steps=steps)
    return atoms, optimizer.nsteps


def test_relax_follows_ase_fire_with_fixed_atoms() -> None:
    """Checked every step, TorchSim's batched FIRE takes ASE FIRE's steps on each slab (lower layers
    fixed and never moved); checked every 5 steps, in batches of one slab, it converges as well."""
    structures = [slab(3, "O", 1), slab(4, "H", 2), slab(3, "C", 3)]
    originals = [a.copy() for a in structures]
    every_step = relax_with_torchsim(structures, "sake-emt-oc", device="cpu", steps_between_swaps=1, max_steps=300)
    swapped = relax_with_torchsim(structures, "sake-emt-oc", device="cpu", max_atoms_per_batch=20)
    for i, (atoms, original) in enumerate(zip(structures, originals)):
        assert np.array_equal(atoms.positions, original.positions)  # inputs untouched
        reference, steps = ase_fire(atoms, 300)
        fixed = atoms.constraints[0].get_indices()
        for result in every_step[i], swapped[i]:
            assert result.index == i and result.converged and result.fmax < 0.05
            np.testing.assert_array_equal(result.atoms.positions[fixed], original.positions[fixed])
            assert result.atoms.get_potential_energy() == pytest.approx(reference.get_potential_energy(), abs=1e-3)
            assert result.energies[-1] == pytest.approx(result.atoms.get_potential_energy(), abs=1e-10)
        assert every_step[i].steps == steps
        assert every_step[i].atoms.get_potential_energy() == pytest.approx(reference.get_potential_energy(), abs=1e-4)
        # forces on all atoms, the fixed ones included
        np.testing.assert_allclose(every_step[i].atoms.get_forces(apply_constraint=False),
                                   reference.get_forces(apply_constraint=False), atol=5e-3)
        assert swapped[i].steps % 5 == 0 and len(swapped[i].energies) == swapped[i].steps // 5 + 1


def test_relax_step_limit() -> None:
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(2)
    atoms.rattle(0.2, seed=0)
    (result,) = relax_with_torchsim([atoms], "lj-argon", device="cpu", fmax=1e-6, max_steps=12)
    assert not result.converged and result.steps == 15 and result.error is None
    assert result.energy_change < 0


@pytest.mark.parametrize(("change", "message"), [
    (lambda s: setattr(s[0], "pbc", (True, True, False)), "periodic along some axes only"),
    (lambda s: setattr(s[1], "pbc", False), "structure 1 is not periodic unlike structure 0"),
    (lambda s: s[0].set_constraint(FixBondLength(0, 1)), "FixBondLengths? constraint: only FixAtoms"),
    (lambda s: s[0].append("Ar"), "does not know element"),
])
def test_relax_refuses_bad_structures(change, message: str) -> None:
    structures = [slab(3, "O", 1), slab(3, "H", 2)]
    change(structures)
    with pytest.raises(ValueError, match=message):
        relax_with_torchsim(structures, "sake-emt-oc", device="cpu")


@pytest.mark.parametrize(("setting", "message"), [
    (dict(fmax=0.0), "fmax must be positive"),
    (dict(max_steps=0), "max_steps must be positive"),
    (dict(fmax=float("nan")), "fmax must be positive"),
    (dict(steps_between_swaps=2.5), "steps_between_swaps must be an integer"),
    (dict(max_atoms_per_batch=0), "max_atoms_per_batch must be"),
    (dict(max_atoms_per_batch=5), "structure 0 has 13 atoms, more than max_atoms_per_batch=5"),
    (dict(max_atoms_per_batch="auto"), "needs a CUDA device"),
])
def test_relax_refuses_bad_settings(setting: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        relax_with_torchsim([slab(3, "O", 1)], "sake-emt-oc", device="cpu", **setting)
