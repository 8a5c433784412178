"""The torch Lennard-Jones model through the calculator reproduces ASE's LennardJones exactly."""

from __future__ import annotations

import numpy as np
import pytest
from ase.calculators.lj import LennardJones as AseLJ

from equicalc import EquiCalculator
from potentials import LennardJones, LennardJonesConfig
from tests.conftest import rattled_lj_crystal, random_system

PARAMS = [dict(sigma=1.0, epsilon=1.0, rc=3.0, smooth=False), dict(sigma=1.1, epsilon=0.7, rc=2.8, ro=2.0, smooth=True)]


def pair(params: dict) -> tuple[EquiCalculator, AseLJ]:
    config = LennardJonesConfig(
        sigma=params["sigma"], epsilon=params["epsilon"], cutoff=params["rc"], onset=params.get("ro"),
        smooth=params["smooth"],
    )
    return EquiCalculator(LennardJones(config), device="cpu", dtype="float64"), AseLJ(**params)


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a) - b).max() / max(np.abs(b).max(), 1e-300))


@pytest.mark.parametrize("params", PARAMS, ids=["shifted", "smooth"])
@pytest.mark.parametrize("pbc", [(True, True, True), (True, True, False), (False, False, False)], ids=["bulk", "slab", "molecule"])
def test_matches_ase_to_1e9_relative(params: dict, pbc: tuple[bool, bool, bool]) -> None:
    rng = np.random.default_rng(11)
    ours, ref = pair(params)
    for atoms in (rattled_lj_crystal(rng, pbc=pbc), rattled_lj_crystal(rng, pbc=pbc, repeat=(3, 2, 2), amplitude=0.05)):
        if pbc == (True, True, True):
            atoms.set_cell(atoms.cell.array + rng.uniform(-0.2, 0.2, (3, 3)), scale_atoms=True)  # triclinic
        a, b = atoms.copy(), atoms.copy()
        a.calc, b.calc = ours, ref
        assert relative(a.get_potential_energy(), b.get_potential_energy()) < 1e-9
        assert relative(a.get_potential_energies(), b.get_potential_energies()) < 1e-9
        assert relative(a.get_forces(), b.get_forces()) < 1e-9
        if atoms.pbc.any():  # ASE also gives a molecule in a box a stress; we refuse (no periodic axis)
            assert relative(a.get_stress(), b.get_stress()) < 1e-9


def test_small_cell_matches_ase() -> None:
    """A cell narrower than the cutoff: atoms interact with their own images."""
    ours, ref = pair(PARAMS[0])
    rng = np.random.default_rng(5)
    atoms = random_system(rng, "small", pbc=(True, True, True), n_atoms=2)
    atoms.set_cell(atoms.cell.array * 1.6 / np.cbrt(atoms.get_volume() / 2), scale_atoms=True)
    a, b = atoms.copy(), atoms.copy()
    a.calc, b.calc = ours, ref
    assert relative(a.get_forces(), b.get_forces()) < 1e-9
    assert relative(a.get_stress(), b.get_stress()) < 1e-9


def test_dimer_at_the_minimum() -> None:
    """E = -epsilon (shifted by u(r_c)) and zero force at r = 2^(1/6) sigma."""
    from ase import Atoms

    ours, _ = pair(dict(sigma=1.0, epsilon=1.0, rc=10.0, smooth=False))
    dimer = Atoms("Ar2", positions=[[0, 0, 0], [0, 0, 2 ** (1 / 6)]])
    dimer.calc = ours
    shift = 4 * (10.0**-12 - 10.0**-6)
    assert dimer.get_potential_energy() == pytest.approx(-1.0 - shift, abs=1e-14)
    assert np.abs(dimer.get_forces()).max() < 1e-12
