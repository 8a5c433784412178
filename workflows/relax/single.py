"""Relaxing one structure with ASE's optimizers (FIRE, BFGS, LBFGS), fixed atoms and, optionally, its cell."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms
from ase.filters import FrechetCellFilter
from ase.io import Trajectory, write
from ase.optimize import BFGS, FIRE, LBFGS

from potentials.base import check_number

from .result import RelaxResult

OPTIMIZERS = {"FIRE": FIRE, "BFGS": BFGS, "LBFGS": LBFGS}
#: OC20's tags: subsurface (fixed), surface, adsorbate
OC20_TAGS = (0, 1, 2)
#: trajectory formats by file suffix
TRAJECTORY_SUFFIXES = {".traj": "traj", ".extxyz": "extxyz", ".xyz": "extxyz"}

#: called after every evaluation with (step, energy [eV], fmax [eV/Å])
Observer = Callable[[int, float, float], None]


def apply_fix(atoms: Atoms, fix: str | Sequence[int]) -> list[int]:
    """Hold atoms fixed with a ``FixAtoms`` constraint, keeping the constraints ``atoms`` already has.

    Args:
        atoms: the structure; its constraints are extended in place.
        fix: ``"tags"``: OC20's convention (tag 0 subsurface, 1 surface, 2 adsorbate), every tag-0
            atom is fixed, provided some atom has a non-zero tag (a structure without tags, all 0,
            gets no constraint rather than being frozen whole); ``"none"``: nothing is added;
            otherwise the indices of the atoms to fix.

    Returns:
        The indices fixed by this call (sorted, without duplicates).

    Raises:
        ValueError: another string; ``"tags"`` on a structure with tags other than 0, 1, 2 (such as
            the layer numbers of ASE's ``fcc111``, which would fix the adsorbate); an index that is not
            an integer, or one outside ``[0, len(atoms))``.
    """
    if isinstance(fix, str):
        if fix == "none":
            return []
        if fix != "tags":
            raise ValueError(f"fix must be 'tags', 'none' or a list of atom indices, got {fix!r}")
        tags = atoms.get_tags()
        foreign = sorted(set(tags.tolist()) - set(OC20_TAGS))
        if foreign:
            raise ValueError(
                f"fix='tags' needs OC20 tags (0 subsurface, 1 surface, 2 adsorbate), but this structure has tags "
                f"{foreign} (ASE's surface builders number layers 1..n from the top and tag adsorbates 0); "
                "give the indices to fix, or 'none'"
            )
        indices = np.flatnonzero(tags == 0) if np.any(tags != 0) else np.array([], dtype=int)
    else:
        values = list(fix)
        bad = [i for i in values if not isinstance(i, numbers.Integral) or isinstance(i, bool)]
        if bad:
            raise ValueError(f"fix indices must be integers, got {bad[0]!r}")
        outside = [int(i) for i in values if not 0 <= i < len(atoms)]
        if outside:
            raise ValueError(f"fix index {outside[0]} is out of range for {len(atoms)} atoms (0..{len(atoms) - 1})")
        indices = np.unique(np.asarray(values, dtype=int))
    if len(indices):
        atoms.set_constraint([*atoms.constraints, FixAtoms(indices=indices)])
    return [int(i) for i in indices]


def relax(
    atoms: Atoms,
    calculator: Calculator,
    *,
    optimizer: str = "FIRE",
    fmax: float = 0.05,
    steps: int = 500,
    maxstep: float | None = None,
    relax_cell: bool = False,
    fix: str | Sequence[int] = "tags",
    trajectory: str | Path | None = None,
    logfile: str | Path | None = None,
    observer: Observer | None = None,
) -> RelaxResult:
    """Relax ``atoms`` with one of ASE's optimizers until the largest force falls below ``fmax``.

    ``atoms`` itself is not changed: a copy (with ``calculator`` attached and the ``fix``
    constraint added to the constraints it already has) is relaxed and returned in the result,
    with a ``SinglePointCalculator`` holding its final energy and unconstrained forces (and stress
    when the cell was relaxed). The optimizer is ASE's, as ASE runs it (``FIRE``: Bitzek et al.,
    PRL 97, 170201 (2006); ``BFGS``; ``LBFGS``: Nocedal, Math. Comp. 35, 773 (1980)) with its
    default parameters; ``relax(atoms, calc, fix=idx)`` steps exactly as
    ``atoms.set_constraint(FixAtoms(idx)); FIRE(atoms).run(fmax, steps)``.

    Convergence is ASE's: ``fmax`` is the largest norm of the (constrained) force rows the optimizer
    sees, i.e. the forces on the free atoms [eV/Å]; with ``relax_cell`` it is over the generalized
    forces of ``ase.filters.FrechetCellFilter`` (Tadmor et al., PRB 59, 235 (1999)): the free atoms'
    forces and three cell rows, the virial ``-V·stress`` over the number of atoms [eV/Å]
    (1 eV/Å there is a stress of N/V eV/Å³). Along a non-periodic axis the cell is held (a slab
    relaxes only its in-plane cell).

    A non-finite energy or force stops the relaxation before any step is taken from it, with
    ``result.error`` saying so and ``converged`` False.

    Args:
        atoms: the structure (n atoms), with tags for ``fix="tags"``.
        calculator: the ASE calculator to relax with (e.g. an ``EquiCalculator``).
        optimizer: ``"FIRE"``, ``"BFGS"`` or ``"LBFGS"``.
        fmax: convergence threshold on the largest force [eV/Å], > 0.
        steps: the most optimizer steps to take, >= 1.
        maxstep: the largest move of an atom in one step [Å] (None: the optimizer's default, 0.2 Å).
        relax_cell: also relax the cell (periodic axes only) to zero stress.
        fix: which atoms to hold fixed (see :func:`apply_fix`): ``"tags"`` (OC20's tag 0), ``"none"``
            or indices.
        trajectory: write every evaluated frame (energy and forces) to this ``.traj`` or
            ``.extxyz``/``.xyz`` file.
        logfile: ASE's optimizer log (step, time, energy, fmax) to this file; ``"-"`` for the screen.
        observer: called after every evaluation with ``(step, energy [eV], fmax [eV/Å])``.

    Returns:
        A :class:`RelaxResult` (``index`` 0) with ``energies``/``fmaxes`` at every evaluation, the
        initial one first (``steps + 1`` entries).

    Raises:
        ValueError: no atoms; fmax <= 0 or non-finite; steps < 1; maxstep <= 0; an unknown optimizer;
            a bad ``fix`` (an index out of range, ...); cell relaxation of a system with no periodic
            axis or without a 3-D cell; a trajectory of another suffix or in a folder that does not exist.
    """
    fmax = check_number(fmax, "fmax", float, minimum=0, inclusive=False, unit="eV/Å")
    steps = check_number(steps, "steps", int, minimum=1)
    if maxstep is not None:
        maxstep = check_number(maxstep, "maxstep", float, minimum=0, inclusive=False, unit="Å")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if len(atoms) == 0:
        raise ValueError("atoms: no atoms to relax")
    if relax_cell and not atoms.pbc.any():
        raise ValueError("cell relaxation needs a periodic system; this one has no periodic axis (pbc all False)")
    if relax_cell and atoms.cell.rank < 3:
        raise ValueError("cell relaxation needs a 3-D cell of non-zero volume")
    for name, path in (("trajectory", trajectory), ("logfile", logfile)):
        if path is not None and str(path) != "-" and not Path(path).absolute().parent.is_dir():
            raise ValueError(f"{name}: the folder of {str(path)!r} does not exist")
    if trajectory is not None and Path(trajectory).suffix not in TRAJECTORY_SUFFIXES:
        raise ValueError(f"trajectory must end in {', '.join(TRAJECTORY_SUFFIXES)}, got {str(trajectory)!r}")

    atoms = atoms.copy()
    apply_fix(atoms, fix)
    atoms.calc = calculator
    target = FrechetCellFilter(atoms, mask=np.outer(atoms.pbc, atoms.pbc)) if relax_cell else atoms
    with ExitStack() as stack:
        opt = stack.enter_context(OPTIMIZERS[optimizer](
            target, logfile=None if logfile is None else str(logfile),
            **({} if maxstep is None else {"maxstep": maxstep}),
        ))
        write_frame = _frame_writer(trajectory, stack) if trajectory is not None else None
        energies: list[float] = []
        fmaxes: list[float] = []
        error = None
        converged = False
        for converged in opt.irun(fmax=fmax, steps=steps):
            energy = atoms.get_potential_energy()
            forces = atoms.get_forces(apply_constraint=False)
            largest = float(opt.optimizable.gradient_norm(opt.optimizable.get_gradient()))
            energies.append(float(energy))
            fmaxes.append(largest)
            if write_frame is not None:
                write_frame(atoms)
            if observer is not None:
                observer(opt.nsteps, float(energy), largest)
            if not (np.isfinite(energy) and np.isfinite(forces).all() and np.isfinite(largest)):
                error = f"non-finite energy or forces at step {opt.nsteps}"
                converged = False
                break
    results = {"energy": energies[-1], "forces": forces}
    if relax_cell:
        results["stress"] = atoms.get_stress()
    final = atoms.copy()
    final.calc = SinglePointCalculator(final, **results)
    return RelaxResult(
        index=0, atoms=final, converged=bool(converged), steps=opt.nsteps, fmax=fmaxes[-1],
        energies=energies, fmaxes=fmaxes, error=error,
    )


def _frame_writer(path: str | Path, stack: ExitStack) -> Callable[[Atoms], None]:
    """A function writing one frame (with its calculator's results) to ``path`` per call, closed with ``stack``."""
    if TRAJECTORY_SUFFIXES[Path(path).suffix] == "traj":
        return stack.enter_context(Trajectory(str(path), "w")).write
    handle = stack.enter_context(open(path, "w"))

    def write_extxyz(atoms: Atoms) -> None:
        write(handle, atoms, format="extxyz")
        handle.flush()

    return write_extxyz
