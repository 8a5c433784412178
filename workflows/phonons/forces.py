"""Forces on the displaced supercells of a finite-displacement phonon calculation.

An equicalc model evaluates all supercells in one batched call (:func:`equicalc.predict` on a
:class:`equicalc.SystemBatch`), split into chunks of at most ``max_atoms_per_call`` atoms to bound
the memory of one call; any other ASE calculator evaluates them one at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import BaseCalculator

from equicalc import SystemBatch, predict
from potentials import Potential


def batched_forces(model: Potential, supercells: Sequence[Atoms], *, max_atoms_per_call: int) -> list[np.ndarray]:
    """Forces on each of ``supercells`` from ``model``, many supercells per model call.

    Supercells go to :func:`equicalc.predict` in order, as many per call as fit in
    ``max_atoms_per_call`` atoms (at least one): float64 geometry on ``model.device``, the network
    in ``model.dtype``, as :class:`equicalc.EquiCalculator` evaluates one system.

    Returns:
        one ``(n_atoms, 3)`` float64 array [eV/Å] per supercell.

    Raises:
        ValueError: ``max_atoms_per_call`` < 1, or what :func:`equicalc.predict` refuses (an element
            the model does not know, coinciding atoms).
    """
    if max_atoms_per_call < 1:
        raise ValueError(f"max_atoms_per_call must be >= 1, got {max_atoms_per_call}")
    forces: list[np.ndarray] = []
    for chunk in _chunks(supercells, max_atoms_per_call):
        systems = SystemBatch.from_atoms(chunk, dtype=torch.float64, device=model.device)
        out = predict(model, systems, forces=True, stress=False)
        flat = out.forces.detach().to(device="cpu", dtype=torch.float64).numpy()
        forces += np.split(flat, np.cumsum([len(atoms) for atoms in chunk])[:-1])
    return forces


def calculator_forces(calculator: BaseCalculator, supercells: Sequence[Atoms]) -> list[np.ndarray]:
    """Forces on each of ``supercells`` [eV/Å], one ``calculator.get_forces`` call per supercell
    (``(n_atoms, 3)`` arrays, for any ASE calculator)."""
    forces = []
    for atoms in supercells:
        atoms = atoms.copy()
        atoms.calc = calculator
        forces.append(np.array(atoms.get_forces(), dtype=np.float64))
    return forces


def _chunks(supercells: Sequence[Atoms], max_atoms: int) -> list[list[Atoms]]:
    """Consecutive groups of ``supercells`` of at most ``max_atoms`` atoms each (a larger supercell alone)."""
    chunks: list[list[Atoms]] = []
    size = 0
    for atoms in supercells:
        if not chunks or size + len(atoms) > max_atoms:
            chunks.append([])
            size = 0
        chunks[-1].append(atoms)
        size += len(atoms)
    return chunks
