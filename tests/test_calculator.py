"""The calculator's contract: ASE caching, properties, bad input, MD energy conservation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.calculator import PropertyNotImplementedError
from ase.md.verlet import VelocityVerlet
from ase import units

from equicalc import EquiCalculator
from potentials import EGNN, EGNNConfig, LennardJonesConfig
from tests.conftest import CountingLJ


def argon(repeat: int = 2) -> Atoms:
    return bulk("Ar", "fcc", a=5.26, cubic=True).repeat(repeat)


def test_one_model_call_per_md_step() -> None:
    atoms = argon()
    atoms.calc = EquiCalculator(CountingLJ(LennardJonesConfig(sigma=3.405, epsilon=0.0103, cutoff=8.0)), device="cpu")
    atoms.rattle(0.05, seed=1)
    dyn = VelocityVerlet(atoms, timestep=2 * units.fs)
    dyn.attach(lambda: (atoms.get_potential_energy(), atoms.get_stress()), interval=1)
    CountingLJ.calls = 0
    dyn.run(10)
    assert CountingLJ.calls == 11  # the initial state plus one per step; energy and stress come free


def test_all_properties_from_one_call() -> None:
    atoms = argon()
    atoms.calc = EquiCalculator("lj-argon", device="cpu")
    atoms.get_forces()
    assert set(atoms.calc.results) == {"energy", "free_energy", "energies", "forces", "stress"}
    assert atoms.calc.results["free_energy"] == atoms.calc.results["energy"]
    assert atoms.get_stress().shape == (6,)


def test_inference_mode_gives_the_same_results() -> None:
    """Under ``torch.inference_mode()`` autograd is off; forces and stress must still be -dE/dr and
    (1/V) dE/de, not zeros (large enough a system that the neighbour search uses worker threads)."""
    atoms = argon(3)
    atoms.rattle(0.05, seed=1)
    atoms.calc = EquiCalculator("lj-argon", device="cpu")
    expected = {name: atoms.calc.get_property(name, atoms) for name in ("energy", "forces", "stress")}
    assert np.abs(expected["forces"]).max() > 1e-3
    atoms.calc.reset()
    with torch.inference_mode():
        for name, value in expected.items():
            assert np.array_equal(atoms.calc.get_property(name, atoms), value), name


def test_todict_is_json_friendly() -> None:
    calc = EquiCalculator("lj-argon", device="cpu", dtype="float32")
    assert json.loads(json.dumps(calc.todict())) == {
        "model": "lj-argon", "device": "cpu", "dtype": "float32", "forces": "conservative"
    }


def test_stress_on_a_molecule_is_not_implemented() -> None:
    atoms = Atoms("Ar2", positions=[[0, 0, 0], [0, 0, 3.8]])
    atoms.calc = EquiCalculator("lj-argon", device="cpu")
    assert atoms.get_forces().shape == (2, 3)
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()


def test_unknown_element_is_named() -> None:
    atoms = molecule("H2O")
    atoms.calc = EquiCalculator("lj-argon", device="cpu")
    with pytest.raises(ValueError, match=r"does not know element\(s\) H \(Z=1\), O \(Z=8\); it supports Ar"):
        atoms.get_potential_energy()


@pytest.mark.parametrize(
    ("atoms", "message"),
    [
        (Atoms("Ar2", positions=[[0, 0, 0], [0, 0, np.nan]]), "NaN or infinite"),
        (Atoms("Ar", cell=[[4, 0, 0], [0, 4, 0], [0, 0, 0]], pbc=True), "zero-length cell vector"),
        (Atoms("Ar", cell=[[4, 0, 0], [0, 4, 0], [4, 4, 0]], pbc=True), "degenerate"),
    ],
)
def test_bad_atoms_raise_value_error(atoms: Atoms, message: str) -> None:
    atoms.calc = EquiCalculator("lj-argon", device="cpu")
    with pytest.raises(ValueError, match=message):
        atoms.get_potential_energy()


def test_empty_atoms_and_isolated_atom() -> None:
    model = EGNN(EGNNConfig(cutoff=3.0, elements=(1, 8), atomic_energies=(-13.6, -432.0), hidden=8, layers=1))
    calc = EquiCalculator(model, device="cpu")
    empty = Atoms()
    empty.calc = calc
    assert empty.get_potential_energy() == 0.0
    assert empty.get_forces().shape == (0, 3)
    lone = Atoms("O", positions=[[1.0, 2.0, 3.0]])
    lone.calc = calc
    assert lone.get_potential_energy() == pytest.approx(-432.0, abs=1e-12)
    assert np.array_equal(lone.get_forces(), np.zeros((1, 3)))


def test_lone_lj_atom_has_zero_energy_and_forces_in_a_big_cell() -> None:
    atoms = Atoms("Ar", cell=np.eye(3) * 30, pbc=True)
    atoms.calc = EquiCalculator("lj-argon", device="cpu")
    assert atoms.get_potential_energy() == 0.0
    assert np.array_equal(atoms.get_stress(), np.zeros(6))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="neither a checkpoint file nor a registered model"):
        EquiCalculator("no-such-model")
    with pytest.raises(ValueError, match="dtype must be"):
        EquiCalculator("lj-argon", dtype="float16")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            EquiCalculator("lj-argon", device="cuda")


def test_float32_agrees_with_float64() -> None:
    atoms = argon()
    atoms.rattle(0.1, seed=3)
    results = {}
    for dtype in ("float32", "float64"):
        a = atoms.copy()
        a.calc = EquiCalculator("lj-argon", device="cpu", dtype=dtype)
        results[dtype] = (a.get_potential_energy(), a.get_forces())
    assert results["float32"][0] == pytest.approx(results["float64"][0], rel=1e-5)
    assert np.abs(results["float32"][1] - results["float64"][1]).max() < 1e-5


@pytest.mark.slow
def test_lj_nve_conserves_energy() -> None:
    """1,000 steps of velocity Verlet in float64: total energy within 1e-4 eV/atom."""
    from workflows import run_md

    atoms = argon(3)
    atoms.calc = EquiCalculator("lj-argon", device="cpu", dtype="float64")
    summary = run_md(atoms, steps=1000, timestep_fs=5.0, temperature_K=60.0, ensemble="nve")
    assert summary.temperature_K[1] > 10.0  # the crystal is actually moving
    assert summary.max_drift_eV_per_atom < 1e-4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    atoms = argon()
    atoms.rattle(0.1, seed=4)
    out = {}
    for device in ("cpu", "cuda"):
        a = atoms.copy()
        a.calc = EquiCalculator("lj-argon", device=device, dtype="float64")
        out[device] = (a.get_potential_energy(), a.get_forces(), a.get_stress())
    assert out["cuda"][0] == pytest.approx(out["cpu"][0], rel=1e-12)
    assert np.allclose(out["cuda"][1], out["cpu"][1], rtol=0, atol=1e-12)
    assert np.allclose(out["cuda"][2], out["cpu"][2], rtol=0, atol=1e-12)
