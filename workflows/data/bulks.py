"""The bulk crystals the slabs are cut from: fcc metals and L1_2-ordered A3B alloys.

Lattice constants are experimental room-temperature values (Å); every labeller gets the same
structures (a labeller's own equilibrium lattice constant differs by a few per cent, which leaves
slabs under a small strain, as in OC20, whose bulks come from DFT relaxations of their own).
"""

from __future__ import annotations

from ase import Atoms
from ase.build import bulk as ase_bulk
from ase.formula import Formula

#: fcc metals: lattice constant a (Å).
METALS: dict[str, float] = {
    "Al": 4.05, "Cu": 3.61, "Ag": 4.09, "Au": 4.08, "Ni": 3.52, "Pd": 3.89, "Pt": 3.92,
    "Rh": 3.80, "Ir": 3.84,
}

#: L1_2 alloys A3B: (A, B, lattice constant a in Å).
ALLOYS: dict[str, tuple[str, str, float]] = {
    "Cu3Au": ("Cu", "Au", 3.75), "Pt3Ni": ("Pt", "Ni", 3.83), "Ni3Al": ("Ni", "Al", 3.57),
    "Cu3Pt": ("Cu", "Pt", 3.69),
}

BULKS: tuple[str, ...] = (*METALS, *ALLOYS)


def bulk_elements(name: str) -> frozenset[str]:
    """The elements of the bulk called ``name`` (a key of :data:`METALS` or :data:`ALLOYS`)."""
    return frozenset(Formula(name).count())


def conventional_cell(name: str) -> Atoms:
    """The 4-atom cubic cell of the bulk ``name``; ``KeyError`` for a name not in :data:`BULKS`."""
    if name in METALS:
        return ase_bulk(name, "fcc", a=METALS[name], cubic=True)
    a_symbol, b_symbol, a = ALLOYS[name]
    return Atoms([b_symbol, a_symbol, a_symbol, a_symbol],
                 scaled_positions=[(0, 0, 0), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)],
                 cell=[a, a, a], pbc=True)


def lattice_constant(name: str) -> float:
    """The cubic lattice constant of the bulk ``name`` (Å)."""
    return METALS[name] if name in METALS else ALLOYS[name][2]
