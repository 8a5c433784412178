"""Physics checks any calculator should pass; the test suite runs them on every model.

Each function raises ``AssertionError`` with the measured error when the check fails and returns
that error otherwise, so benchmarks and reports can quote it.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.calculators.fd import FiniteDifferenceCalculator, calculate_numerical_forces
from scipy.spatial.transform import Rotation


def _copy_with(atoms: Atoms, calc: Calculator) -> Atoms:
    out = atoms.copy()
    out.calc = calc
    return out


def assert_forces_match_fd(
    atoms: Atoms, calc: Calculator, *, eps: float = 1e-4, atol: float = 1e-6, rtol: float = 1e-7
) -> float:
    """Forces equal central finite differences of the energy, -(E(r + h) - E(r - h)) / 2h (ASE's
    ``calculate_numerical_forces``), to ``atol + rtol * max|F|`` [eV/Å]."""
    probe = _copy_with(atoms, calc)
    forces = probe.get_forces()
    numeric = calculate_numerical_forces(_copy_with(atoms, calc), eps=eps)
    err = float(np.abs(forces - numeric).max())
    atol = atol + rtol * float(np.abs(forces).max(initial=0.0))
    assert err < atol, f"forces differ from finite differences by {err:.3e} eV/Å (atol {atol:.1e})"
    return err


def assert_stress_match_fd(
    atoms: Atoms, calc: Calculator, *, eps: float = 1e-5, atol: float = 1e-7, rtol: float = 1e-7
) -> float:
    """Stress equals ASE's ``FiniteDifferenceCalculator`` strain derivative, to ``atol + rtol * max|σ|``
    [eV/Å³]."""
    stress = _copy_with(atoms, calc).get_stress()
    numeric = _copy_with(atoms, FiniteDifferenceCalculator(calc, eps_disp=None, eps_strain=eps)).get_stress()
    err = float(np.abs(stress - numeric).max())
    atol = atol + rtol * float(np.abs(stress).max())
    assert err < atol, f"stress differs from finite differences by {err:.3e} eV/Å³ (atol {atol:.1e})"
    return err


def assert_invariant(
    atoms: Atoms, calc: Calculator, *, rng: np.random.Generator, rtol: float = 1e-10, reflections: bool = True
) -> float:
    """Energy invariant, forces equivariant under a random rotation (and reflection), translation
    and permutation of the atoms.

    Returns the larger of |dE| / max(|E|, 1 eV) and max|dF| / max(max|F|, 1 eV/Å), which must stay
    below ``rtol``.
    """
    base = _copy_with(atoms, calc)
    energy, forces = base.get_potential_energy(), base.get_forces()

    rotation = Rotation.random(random_state=int(rng.integers(2**31))).as_matrix()
    if reflections:
        rotation = rotation @ np.diag([1.0, 1.0, -1.0])
    moved = atoms.copy()
    moved.positions = atoms.positions @ rotation.T + rng.normal(0, 3.0, 3)
    moved.cell = atoms.cell.array @ rotation.T
    perm = rng.permutation(len(atoms))
    moved = moved[perm]
    moved.calc = calc
    errors = (
        abs(moved.get_potential_energy() - energy) / max(abs(energy), 1.0),
        float(np.abs(moved.get_forces() - (forces @ rotation.T)[perm]).max(initial=0.0))
        / max(float(np.abs(forces).max(initial=0.0)), 1.0),
    )
    err = max(errors)
    assert err < rtol, f"relative change of energy {errors[0]:.3e}, of forces {errors[1]:.3e} under E(3) and permutation"
    return err


def assert_extensive(atoms: Atoms, calc: Calculator, *, repeat: tuple[int, int, int] = (2, 2, 2), rtol: float = 1e-10) -> float:
    """A supercell of a periodic system has prod(repeat) times the energy (relative error returned)."""
    energy = _copy_with(atoms, calc).get_potential_energy()
    big = _copy_with(atoms.repeat(repeat), calc).get_potential_energy()
    factor = int(np.prod(repeat))
    err = abs(big - factor * energy) / max(abs(factor * energy), 1e-12)
    assert err < rtol, f"supercell energy {big} vs {factor} x {energy}: relative error {err:.3e}"
    return err
