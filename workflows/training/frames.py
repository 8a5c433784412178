"""Labelled frames for training: read from any ASE-readable file, checked before training starts.

A :class:`Frame` holds one structure and its labels as numpy arrays (float64). Every problem a
frame can have (no energy, no forces, a non-finite label, the wrong number of force rows, an
element the model lacks, no atoms) is found by :func:`check_frames` and reported with the file and
the frame's index (and database id), all at once, before any training step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.constraints import FixAtoms
from ase.data import chemical_symbols
from ase.stress import voigt_6_to_full_3x3_stress

from potentials import ConfigError


class DataError(ValueError):
    """A data set that cannot be trained on; the message names the frames."""


@dataclass
class Frame:
    """One labelled structure.

    Attributes:
        atoms: the structure (positions [Å], cell, pbc, numbers, constraints).
        energy: total energy [eV].
        forces: ``(n_atoms, 3)`` [eV/Å].
        stress: ``(3, 3)`` [eV/Å³] (ASE's sign), or None.
        free: ``(n_atoms,)`` bool, False for atoms fixed by ``FixAtoms``.
        label: where the frame came from, for messages (``"file.db id=17"``).
    """

    atoms: Atoms
    energy: float
    forces: np.ndarray
    stress: np.ndarray | None
    free: np.ndarray
    label: str


def read_frames(path: str | os.PathLike, select: str = "", *, energy_key: str = "energy",
                forces_key: str = "forces", stress_key: str | None = "stress") -> list[Frame]:
    """Read the labelled frames of ``path``: an ASE database (``select`` an ase.db query) or any file
    ``ase.io.read`` reads (``select`` an index such as ``':'`` or ``'0:100'``).

    A label is looked up, in order, among the calculator's results, ``atoms.info`` (database key-value
    pairs and data included) and, for forces, ``atoms.arrays``. A missing label is recorded as NaN and
    reported by :func:`check_frames`.

    Raises:
        OSError: the file does not exist.
        DataError: the file cannot be read, or ``select`` matches no frame.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(2, "no such data file", str(path))
    try:
        if path.suffix == ".db":
            from ase.db import connect

            with connect(path) as db:
                rows = list(db.select(select or None))
            structures = []
            for row in rows:
                atoms = row.toatoms()
                atoms.info.update(row.key_value_pairs)
                atoms.info.update(row.get("data", {}))
                structures.append((atoms, f"{path} id={row.id}"))
        else:
            from ase.io import read

            images = read(path, index=select or ":")
            images = images if isinstance(images, list) else [images]
            structures = [(atoms, f"{path} frame {i}") for i, atoms in enumerate(images)]
    except Exception as err:  # ase's readers and ase.db's query parser raise many types
        raise DataError(f"cannot read {path} with select {select!r} ({type(err).__name__}: {err})") from err
    if not structures:
        raise DataError(f"{path}: select {select!r} matches no frame")
    return [_frame(atoms, label, energy_key, forces_key, stress_key) for atoms, label in structures]


def _label(atoms: Atoms, key: str, per_atom: bool = False) -> np.ndarray | None:
    results = atoms.calc.results if atoms.calc is not None else {}
    for source in (results, atoms.info) + ((atoms.arrays,) if per_atom else ()):
        if key in source and source[key] is not None:
            return np.asarray(source[key], dtype=np.float64)
    return None


def _frame(atoms: Atoms, label: str, energy_key: str, forces_key: str, stress_key: str | None) -> Frame:
    energy = _label(atoms, energy_key)
    forces = _label(atoms, forces_key, per_atom=True)
    stress = _label(atoms, stress_key) if stress_key else None
    if stress is not None and stress.shape == (6,):
        stress = voigt_6_to_full_3x3_stress(stress)
    free = np.ones(len(atoms), dtype=bool)
    for constraint in atoms.constraints:
        if isinstance(constraint, FixAtoms):
            free[constraint.index] = False
    return Frame(
        atoms=atoms,
        energy=float(energy) if energy is not None and energy.size == 1 else np.nan,
        forces=forces if forces is not None else np.full((0, 3), np.nan),
        stress=stress,
        free=free,
        label=label,
    )


def check_frames(frames: list[Frame], elements: tuple[int, ...] | None, what: str,
                 *, energy_key: str = "energy", forces_key: str = "forces", shown: int = 5) -> None:
    """Raise :class:`DataError` listing the frames that cannot be trained on (the first ``shown`` of
    them, and how many there are), with the reason of each.

    Args:
        frames: the frames.
        elements: atomic numbers the model supports (None: any).
        what: the data set's role, for the message ('training', 'validation').
    """
    problems = []
    for frame in frames:
        n = len(frame.atoms)
        if n == 0:
            problems.append(f"{frame.label}: no atoms")
        elif not np.isfinite(frame.energy):
            problems.append(f"{frame.label}: no finite energy under key {energy_key!r}")
        elif frame.forces.shape != (n, 3):
            problems.append(f"{frame.label}: no forces under key {forces_key!r} "
                            f"(found shape {frame.forces.shape}, expected ({n}, 3))")
        elif not np.isfinite(frame.forces).all():
            problems.append(f"{frame.label}: non-finite forces")
        elif frame.stress is not None and (frame.stress.shape != (3, 3) or not np.isfinite(frame.stress).all()):
            problems.append(f"{frame.label}: stress must be 6 Voigt or 3x3 finite values, got {frame.stress.tolist()}")
        elif not np.isfinite(frame.atoms.positions).all():
            problems.append(f"{frame.label}: non-finite positions")
        elif elements is not None and not set(frame.atoms.numbers) <= set(elements):
            missing = sorted(set(frame.atoms.numbers) - set(elements))
            problems.append(f"{frame.label}: element(s) {' '.join(chemical_symbols[z] for z in missing)} "
                            f"that the model lacks (it has {' '.join(chemical_symbols[z] for z in elements)})")
    if problems:
        more = f" (and {len(problems) - shown} more)" if len(problems) > shown else ""
        raise DataError(f"{len(problems)} of {len(frames)} {what} frames cannot be used{more}:\n  "
                        + "\n  ".join(problems[:shown]))


def elements_of(frames: list[Frame]) -> tuple[int, ...]:
    """Sorted atomic numbers present in ``frames``."""
    return tuple(sorted({int(z) for frame in frames for z in frame.atoms.numbers}))


def reference_energies_from(spec: dict, elements: tuple[int, ...]) -> tuple[float, ...]:
    """Per-element energies [eV] in ``elements`` order from a mapping symbol (or Z) -> eV.

    Raises:
        ConfigError: an element without a value, or an unknown symbol.
    """
    by_z = {}
    for key, value in spec.items():
        z = key if isinstance(key, int) else chemical_symbols.index(key) if key in chemical_symbols else None
        if z is None:
            raise ConfigError(f"model.reference_energies: unknown element {key!r}")
        by_z[z] = float(value)
    missing = [chemical_symbols[z] for z in elements if z not in by_z]
    if missing:
        raise ConfigError(f"model.reference_energies has no value for {', '.join(missing)}")
    return tuple(by_z[z] for z in elements)
