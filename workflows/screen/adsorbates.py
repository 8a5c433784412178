"""Adsorbates for a screen: a molecule and the atoms through which it binds to the surface.

An :class:`Adsorbate` is monodentate (one binding atom, placed over a site) or bidentate (two,
each over a site; AdsorbML's fairchem-data-oc draws one binding atom per placement and cannot do
this). The built-in :data:`LIBRARY` holds OC20's ``*X`` species of :data:`workflows.data.adsorbates.ADSORBATES`
(binding atom first, standing along +z) and bidentate ones drawn lying on the surface: the first
binding atom at the origin, the second on +x at the same height, the rest of the molecule above
(+z). Bond lengths (Å) are gas-phase values from standard tables (NIST CCCBDB); the angles of the
bidentate ones are those of their di-σ adsorbed forms (sp3/sp2 carbons).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms

from workflows.data.adsorbates import ADSORBATES, make_adsorbate

from .surfaces import read_file

_SP3 = 1.09 * np.array([-1.0 / 3.0, np.sqrt(7.0) / 3.0, 1.0 / 3.0])  # C-H 1.09 Å, tetrahedral to C-C and C-surface

#: Bidentate adsorbates: (symbol, position in Å) with both binding atoms first, lying along +x.
BIDENTATES: dict[str, tuple[tuple[str, tuple[float, float, float]], ...]] = {
    # formate through both O: C-O 1.25 Å, O-C-O 130 degrees, C-H 1.09 Å
    "OCHO": (("O", (0.0, 0.0, 0.0)), ("O", (2.266, 0.0, 0.0)), ("C", (1.133, 0.0, 0.528)),
             ("H", (1.133, 0.0, 1.618))),
    # acetylene through both C (cis-bent di-sigma): C-C 1.20 Å, C-H 1.06 Å at 120 degrees to C-C
    "CHCH": (("C", (0.0, 0.0, 0.0)), ("C", (1.203, 0.0, 0.0)), ("H", (-0.531, 0.0, 0.918)),
             ("H", (1.734, 0.0, 0.918))),
    # ethylene through both C (di-sigma, sp3 carbons): C-C 1.34 Å, C-H 1.09 Å
    "CH2CH2": (("C", (0.0, 0.0, 0.0)), ("C", (1.339, 0.0, 0.0)),
               ("H", tuple(_SP3)), ("H", tuple(_SP3 * (1, -1, 1))),
               ("H", tuple(_SP3 * (-1, 1, 1) + (1.339, 0, 0))), ("H", tuple(_SP3 * (-1, -1, 1) + (1.339, 0, 0)))),
}

#: Every built-in adsorbate name (without the ``*``).
LIBRARY: tuple[str, ...] = (*ADSORBATES, *BIDENTATES)


@dataclass(frozen=True)
class Adsorbate:
    """A molecule and the indices of its atoms that bind to the surface.

    ``name`` labels it in reports (a leading ``*`` is stripped); ``atoms`` is the molecule (Å,
    non-periodic, no cell needed), oriented as it should stand on the surface: placement keeps
    this orientation up to a random turn about the surface normal and a small tilt (a bidentate
    one is turned so its binding atoms lie along the surface in any case). ``binding_indices``
    are one (monodentate) or two (bidentate) distinct indices into ``atoms``.

    Raises ``ValueError`` for an empty molecule, no binding atom, more than two, an index out of
    range or a repeated one.
    """

    name: str
    atoms: Atoms
    binding_indices: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", self.name.removeprefix("*"))
        indices = tuple(int(i) for i in self.binding_indices)
        object.__setattr__(self, "binding_indices", indices)
        n_atoms = len(self.atoms)
        if n_atoms == 0:
            raise ValueError(f"adsorbate {self.name!r} has no atoms")
        if not indices:
            raise ValueError(f"adsorbate {self.name!r} has no binding atom: give its binding indices")
        if len(indices) > 2:
            raise ValueError(f"adsorbate {self.name!r} has {len(indices)} binding atoms {indices}; "
                             "at most 2 (bidentate) are supported")
        if len(set(indices)) != len(indices):
            raise ValueError(f"adsorbate {self.name!r} repeats a binding index: {indices}")
        for index in indices:
            if not 0 <= index < n_atoms:
                raise ValueError(f"binding index {index} of adsorbate {self.name!r} is out of range "
                                 f"for its {n_atoms} atoms (0..{n_atoms - 1})")


def library_adsorbate(name: str) -> Adsorbate:
    """The built-in adsorbate ``name`` ("CO" or "*CO"; see :data:`LIBRARY`).

    Monodentate ones bind through their first atom, bidentate ones through their first two.
    ``ValueError`` naming the known adsorbates for an unknown name.
    """
    key = name.removeprefix("*")
    if key in ADSORBATES:
        return Adsorbate(key, make_adsorbate(key), (0,))
    if key in BIDENTATES:
        symbols, positions = zip(*BIDENTATES[key])
        return Adsorbate(key, Atoms(symbols, positions=positions), (0, 1))
    raise ValueError(f"unknown adsorbate {name!r}; the library has: {', '.join(LIBRARY)}")


def read_adsorbate(path: str | os.PathLike, binding_indices: Sequence[int], name: str | None = None) -> Adsorbate:
    """The molecule in the file ``path`` (any format ASE reads: xyz, extxyz, mol, POSCAR...) binding
    through the atoms ``binding_indices`` (0-based).

    The molecule is turned to stand on the surface: monodentate, the binding atom at the origin
    and the centroid of the other atoms straight above it (+z); bidentate, the first binding atom
    at the origin, the second on +x and the centroid of the others above the binding axis (as
    the library's). Cell and periodicity are dropped. ``name`` defaults to the chemical formula.

    Raises ``FileNotFoundError`` for a missing file, ``ValueError`` for an unreadable one and for
    the bad binding indices listed in :class:`Adsorbate`.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"adsorbate file {os.fspath(path)!r} does not exist")
    atoms = read_file(path, "a molecule")
    molecule = Atoms(atoms.numbers, positions=atoms.positions)
    adsorbate = Adsorbate(name or molecule.get_chemical_formula(), molecule, tuple(binding_indices))
    return Adsorbate(adsorbate.name, adsorption_frame(molecule, adsorbate.binding_indices), adsorbate.binding_indices)


def adsorption_frame(molecule: Atoms, binding: Sequence[int]) -> Atoms:
    """A copy of ``molecule`` turned as it stands on a surface, binding through the atoms ``binding``:
    see :func:`read_adsorbate`. ``ValueError`` when two binding atoms coincide."""
    standing = molecule.copy()
    standing.translate(-standing.positions[binding[0]])
    others = np.setdiff1d(np.arange(len(standing)), binding)
    if len(binding) == 2:
        axis = standing.positions[binding[1]]
        if np.linalg.norm(axis) < 1e-6:
            raise ValueError("the two binding atoms of the adsorbate sit at the same position")
        standing.rotate(axis, "x")
        if len(others):
            up = standing.positions[others].mean(axis=0) * (0, 1, 1)  # off the binding (x) axis
            if np.linalg.norm(up) > 1e-6:
                standing.rotate(up, "z")  # about x only: up is perpendicular to x
    elif len(others):
        up = standing.positions[others].mean(axis=0)
        if np.linalg.norm(up) > 1e-6:
            standing.rotate(up, "z")
    return standing
