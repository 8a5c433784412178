"""Physics checks any calculator should pass, and the awkward cells to run them on; the test suite
runs them on every model.

Each ``assert_*`` function raises ``AssertionError`` with the measured error when the check fails
and returns that error otherwise, so benchmarks and reports can quote it. Checks that take a
``calc`` also take a :class:`potentials.Potential`, which they evaluate through a float64 CPU
:class:`~equicalc.EquiCalculator`.

Cell builders (:func:`small_triclinic_cell`, :func:`skewed_slab`, :func:`periodic_wire`,
:func:`mixed_systems`) are sized by a model's cutoff and drawn from its elements, so one list of
cells serves every model: ``STRESS_CELLS`` holds the three cell types every model's stress is
checked on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.calculators.fd import FiniteDifferenceCalculator, calculate_numerical_forces
from ase.neighborlist import neighbor_list
from scipy.spatial.transform import Rotation

from potentials import Potential

from .batch import SystemBatch
from .calculator import EquiCalculator
from .evaluate import predict


def _calculator(calc: Calculator | Potential) -> Calculator:
    """``calc`` itself, or a float64 CPU calculator for a model."""
    return EquiCalculator(calc, device="cpu", dtype="float64") if isinstance(calc, Potential) else calc


def _copy_with(atoms: Atoms, calc: Calculator) -> Atoms:
    out = atoms.copy()
    out.calc = calc
    return out


def assert_forces_match_fd(
    atoms: Atoms, calc: Calculator | Potential, *, eps: float = 1e-4, atol: float = 1e-6, rtol: float = 1e-7
) -> float:
    """Forces equal central finite differences of the energy, -(E(r + h) - E(r - h)) / 2h (ASE's
    ``calculate_numerical_forces``), to ``atol + rtol * max|F|`` [eV/Å]."""
    calc = _calculator(calc)
    probe = _copy_with(atoms, calc)
    forces = probe.get_forces()
    numeric = calculate_numerical_forces(_copy_with(atoms, calc), eps=eps)
    err = float(np.abs(forces - numeric).max())
    atol = atol + rtol * float(np.abs(forces).max(initial=0.0))
    assert err < atol, f"forces differ from finite differences by {err:.3e} eV/Å (atol {atol:.1e})"
    return err


def assert_stress_match_fd(
    atoms: Atoms, calc: Calculator | Potential, *, eps: float = 1e-5, atol: float = 1e-10, rtol: float = 1e-6
) -> float:
    """The stress returned is the strain derivative of the energy returned: it equals ASE's
    ``FiniteDifferenceCalculator`` (central differences of the energy at strains ±``eps`` of each
    Voigt component) to ``atol + rtol * max|σ|`` [eV/Å³].

    What stress means for every periodicity: the energy of a system with at least one periodic axis
    is a function of the whole 3x3 cell, the atoms moving with it (``set_cell(..., scale_atoms=True)``,
    which is how ``predict`` strains them too), so σ = (1/V) dE/dε is defined for bulk, slabs and
    wires alike, with V the volume of the whole cell, vacuum included (ASE's convention). Along a
    non-periodic axis the strain only stretches the atoms' coordinates; a slab's or wire's σ is
    therefore not a surface or line stress, but it is the derivative that cell filters and
    barostats reading ``get_stress()`` assume. A system with no periodic axis has no stress (the
    calculator raises ``PropertyNotImplementedError``), and neither has a model that cannot give
    one: the check then fails with that error.

    ``rtol`` is relative to the largest component, so the check needs no tuning to a model's energy
    scale. The default ``eps`` moves atoms by about 1e-4 Å in this module's cells, too little to cross
    a cutoff or change a neighbour cap there, and its O(eps²) truncation error was 1e-9 to 1e-7 of the
    stress for every model of the test suite on them. Use low-symmetry cells (this module's): at a
    high-symmetry point such as a perfect cubic crystal, a network can have very large higher strain
    derivatives (features that vanish by symmetry, then normalised), and the finite difference needs a
    much smaller ``eps`` to converge.
    """
    calc = _calculator(calc)
    stress = _copy_with(atoms, calc).get_stress()
    numeric = _copy_with(atoms, FiniteDifferenceCalculator(calc, eps_disp=None, eps_strain=eps)).get_stress()
    err = float(np.abs(stress - numeric).max())
    scale = float(np.abs(stress).max())
    atol = atol + rtol * scale
    assert err < atol, (
        f"stress differs from finite differences of the energy by {err:.3e} eV/Å³ ({err / scale if scale else np.inf:.1e} of "
        f"the largest component, atol {atol:.1e}): returned {np.array2string(stress, precision=6)}, "
        f"finite differences {np.array2string(numeric, precision=6)} (Voigt xx yy zz yz xz xy)"
    )
    return err


def assert_batch_matches_single(systems: Sequence[Atoms], model: Potential, *, rtol: float = 1e-10) -> float:
    """One :func:`~equicalc.predict` call on a :class:`~equicalc.SystemBatch` of all ``systems`` gives
    each system the energy [eV], per-atom energies, forces [eV/Å] and stress [eV/Å³] it gets alone.

    Geometry is float64 and the model runs as it is (in its dtype, on its device): give a float64
    model for a tight ``rtol``, and systems of different kinds and sizes (:func:`mixed_systems`), so
    that anything leaking between systems or normalised by the wrong system shows. Each quantity's
    error is relative to its largest magnitude over the lone results; stress must be NaN exactly
    where a lone system has none (no periodic axis). Returns the largest relative error.
    """
    batched = predict(model, SystemBatch.from_atoms(systems, dtype=torch.float64, device=model.device))
    alone = [predict(model, SystemBatch.from_atoms(a, dtype=torch.float64, device=model.device)) for a in systems]
    sizes = [len(atoms) for atoms in systems]
    pairs = {
        "energy": (batched.energy, torch.cat([p.energy for p in alone])),
        "energies": (batched.energies, torch.cat([p.energies for p in alone])),
        "forces": (batched.forces, torch.cat([p.forces for p in alone])),
        "stress": (batched.stress, torch.cat([p.stress for p in alone])),
    }
    errors: dict[str, float] = {}
    for name, (got, want) in pairs.items():
        got, want = got.detach().double().cpu(), want.detach().double().cpu()
        nan = torch.isnan(want)
        assert torch.equal(torch.isnan(got), nan) and bool(torch.isfinite(got[~nan]).all()), (
            f"{name}: NaN or infinite values in the batch where the lone systems have finite ones, or the reverse"
        )
        scale = float(want[~nan].abs().max()) if bool((~nan).any()) else 0.0
        diff = (got - want).abs().nan_to_num(0.0)
        largest = float(diff.max()) if diff.numel() else 0.0
        errors[name] = largest / scale if scale > 0 else largest
        if errors[name] >= rtol:
            rows = diff.flatten(1).amax(1) if diff.dim() > 1 else diff
            worst = int(rows.argmax())
            where = (
                f"system {worst}" if name in ("energy", "stress")
                else f"atom {worst} (system {int(np.searchsorted(np.cumsum(sizes), worst, side='right'))})"
            )
            raise AssertionError(
                f"{name} of a batch of {len(systems)} systems differs from each system alone by {errors[name]:.3e} "
                f"relative (rtol {rtol:.0e}), worst at {where}"
            )
    return max(errors.values())


def assert_invariant(
    atoms: Atoms,
    calc: Calculator | Potential,
    *,
    rng: np.random.Generator,
    rtol: float = 1e-10,
    reflections: bool = True,
) -> float:
    """Energy invariant, forces equivariant under a random rotation (and reflection), translation
    and permutation of the atoms.

    Returns the larger of |dE| / max(|E|, 1 eV) and max|dF| / max(max|F|, 1 eV/Å), which must stay
    below ``rtol``.
    """
    calc = _calculator(calc)
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


def assert_extensive(
    atoms: Atoms, calc: Calculator | Potential, *, repeat: tuple[int, int, int] = (2, 2, 2), rtol: float = 1e-10
) -> float:
    """A supercell of a periodic system has prod(repeat) times the energy (relative error returned)."""
    calc = _calculator(calc)
    energy = _copy_with(atoms, calc).get_potential_energy()
    big = _copy_with(atoms.repeat(repeat), calc).get_potential_energy()
    factor = int(np.prod(repeat))
    err = abs(big - factor * energy) / max(abs(factor * energy), 1e-12)
    assert err < rtol, f"supercell energy {big} vs {factor} x {energy}: relative error {err:.3e}"
    return err


#: smallest distance between two atoms, or an atom and an image, in the cell builders [cutoff]
MIN_DISTANCE = 0.3


def _place_atoms(
    rng: np.random.Generator, cell: np.ndarray, pbc: tuple[bool, bool, bool], n_atoms: int,
    elements: Sequence[int], cutoff: float, region: tuple[Sequence[float], Sequence[float]] = ((0, 0, 0), (1, 1, 1)),
) -> Atoms:
    """``n_atoms`` atoms of ``elements`` (distinct ones while there are enough, in random order) at
    fractional coordinates uniform in the box ``region`` = (low, high), redrawn until no two atoms,
    nor an atom and an image, are closer than ``MIN_DISTANCE * cutoff`` [Å]."""
    for _ in range(1000):
        frac = rng.uniform(region[0], region[1], (n_atoms, 3))
        numbers = np.resize(rng.permutation(list(elements)), n_atoms)
        atoms = Atoms(numbers=numbers, scaled_positions=frac, cell=cell, pbc=pbc)
        if len(neighbor_list("i", atoms, MIN_DISTANCE * cutoff)) == 0:
            return atoms
    raise ValueError(f"no placement of {n_atoms} atoms {MIN_DISTANCE * cutoff:.3g} Å apart in cell {cell.tolist()}")


def small_triclinic_cell(elements: Sequence[int], cutoff: float, *, n_atoms: int = 3, seed: int = 0) -> Atoms:
    """A periodic triclinic cell, all of whose lattice vectors are shorter than ``cutoff`` [Å]: every
    atom neighbours several shells of its own images. The cell is a general 3x3 matrix (not
    upper-triangular), so every stress component is non-trivial; atoms of ``elements`` sit at random,
    no closer than ``MIN_DISTANCE * cutoff`` to each other or an image."""
    rng = np.random.default_rng(seed)
    cell = cutoff * (np.diag(rng.uniform(0.6, 0.75, 3)) + rng.uniform(-0.12, 0.12, (3, 3)))
    return _place_atoms(rng, cell, (True, True, True), n_atoms, elements, cutoff)


def skewed_slab(elements: Sequence[int], cutoff: float, *, n_atoms: int = 6, seed: int = 0) -> Atoms:
    """A slab, pbc (True, True, False), ``n_atoms`` atoms in a layer half a ``cutoff`` thick: in-plane
    lattice vectors of about 0.9 ``cutoff`` at about 60° (skewed), a third cell vector tilted away
    from the normal, and more than a cutoff of vacuum across the open axis."""
    rng = np.random.default_rng(seed)
    shape = np.array([[0.9, 0.0, 0.0], [0.45, 0.8, 0.0], [0.25, -0.15, 2.2]])
    cell = cutoff * (shape + rng.uniform(-0.05, 0.05, (3, 3)))
    thickness = 0.5 * cutoff / cell[2, 2]  # fractional
    layer = ((0, 0, 0.1), (1, 1, 0.1 + thickness))
    return _place_atoms(rng, cell, (True, True, False), n_atoms, elements, cutoff, layer)


def periodic_wire(elements: Sequence[int], cutoff: float, *, n_atoms: int = 4, seed: int = 0) -> Atoms:
    """A 1-D periodic wire, pbc (False, False, True): the periodic lattice vector is shorter than
    ``cutoff`` and tilted off the z axis; ``n_atoms`` atoms lie within a cross-section of about 0.6
    ``cutoff`` square, and the two open cell vectors (about 2 ``cutoff``, not orthogonal) leave vacuum."""
    rng = np.random.default_rng(seed)
    shape = np.array([[2.0, 0.0, 0.2], [0.3, 2.0, -0.1], [0.1, -0.1, 0.85]])
    cell = cutoff * (shape + rng.uniform(-0.05, 0.05, (3, 3)))
    return _place_atoms(rng, cell, (False, False, True), n_atoms, elements, cutoff, ((0.35, 0.35, 0), (0.65, 0.65, 1)))


def molecule(elements: Sequence[int], cutoff: float, *, n_atoms: int = 5, seed: int = 0) -> Atoms:
    """A random cluster of ``n_atoms`` atoms in a cube of side 0.8 ``cutoff``, no cell, no periodicity."""
    rng = np.random.default_rng(seed)
    atoms = _place_atoms(rng, 0.8 * cutoff * np.eye(3), (False, False, False), n_atoms, elements, cutoff)
    return Atoms(numbers=atoms.numbers, positions=atoms.positions)


def bulk_cell(elements: Sequence[int], cutoff: float, *, n_atoms: int = 8, seed: int = 0) -> Atoms:
    """A periodic triclinic cell of ``n_atoms`` atoms whose lattice vectors are about 1.1 ``cutoff``."""
    rng = np.random.default_rng(seed)
    cell = cutoff * (1.1 * np.eye(3) + rng.uniform(-0.1, 0.1, (3, 3)))
    return _place_atoms(rng, cell, (True, True, True), n_atoms, elements, cutoff)


#: the cell types every model's stress is checked on: name -> builder(elements, cutoff)
STRESS_CELLS: dict[str, Callable[[Sequence[int], float], Atoms]] = {
    "small_triclinic": small_triclinic_cell,
    "skewed_slab": skewed_slab,
    "wire": periodic_wire,
}


def mixed_systems(elements: Sequence[int], cutoff: float, *, seed: int = 0) -> list[Atoms]:
    """Systems of every kind and of different sizes, for :func:`assert_batch_matches_single`: a
    molecule (5 atoms), a small triclinic cell (3), a skewed slab (6), a bulk cell larger than the
    cutoff (8) and a wire (4)."""
    return [
        molecule(elements, cutoff, seed=seed),
        small_triclinic_cell(elements, cutoff, seed=seed + 1),
        skewed_slab(elements, cutoff, seed=seed + 2),
        bulk_cell(elements, cutoff, seed=seed + 3),
        periodic_wire(elements, cutoff, seed=seed + 4),
    ]
