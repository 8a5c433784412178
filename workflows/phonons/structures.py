"""Crystal structures between ASE and phonopy: ``ase.Atoms`` <-> ``phonopy.structure.atoms.PhonopyAtoms``."""

from __future__ import annotations

from ase import Atoms
from phonopy.structure.atoms import PhonopyAtoms


def to_phonopy_atoms(atoms: Atoms) -> PhonopyAtoms:
    """The crystal ``atoms`` as phonopy's cell: atomic numbers, cell [Å], scaled positions and the
    masses of ``atoms`` [amu] (so masses set on the ASE side, e.g. isotopes, carry over)."""
    return PhonopyAtoms(
        numbers=atoms.numbers, cell=atoms.cell[:], scaled_positions=atoms.get_scaled_positions(wrap=False),
        masses=atoms.get_masses(),
    )


def to_ase_atoms(cell: PhonopyAtoms) -> Atoms:
    """Phonopy's ``cell`` (a unit cell, primitive cell or displaced supercell) as periodic ``ase.Atoms``
    with the same atomic numbers, cell [Å], Cartesian positions [Å] and masses [amu]."""
    return Atoms(numbers=cell.numbers, cell=cell.cell, positions=cell.positions, masses=cell.masses, pbc=True)
