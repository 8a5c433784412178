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
from scipy.sparse.csgraph import connected_components

from workflows.data.adsorbates import ADSORBATES, make_adsorbate

from .anomaly import AnomalySettings, bonds, neighbour_list
from .surfaces import read_file, refuse_coinciding_atoms

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

    Raises ``ValueError`` for an empty molecule, atoms that coincide (closer than 0.5 Å), atoms that
    are not one molecule or bonded complex (:func:`refuse_fragments`), no binding atom, more than two, an index out
    of range or a repeated one.
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
        try:
            refuse_coinciding_atoms(self.atoms)
            refuse_fragments(self.atoms)
        except ValueError as error:
            raise ValueError(f"adsorbate {self.name!r}: {error}") from None
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


def refuse_fragments(molecule: Atoms) -> None:
    """Raise ``ValueError`` naming the parts (atom indices and formula of each) when the atoms of
    ``molecule`` (taken as they are, not periodic) are not one connected complex: a part far from the
    rest is no adsorbate; placed with it, it would hang in the vacuum, or count as desorbed.

    Bonds are generous here, those of the anomaly detector's desorption test (ASE's ``natural_cutoffs``
    x :attr:`~workflows.screen.anomaly.AnomalySettings.desorption_mult` 1.5 plus its 0.3 Å skin per atom,
    :func:`workflows.screen.anomaly.bonds`), so that hydrogen-bonded complexes (a water dimer's O-H...O,
    1.9-2.0 Å) are one; the dissociation test compares the initial and final bonds, so a complex that
    starts so is not flagged for it. ``molecule`` with a periodic cell: see :func:`unwrap_molecule`."""
    settings = AnomalySettings()
    isolated = Atoms(molecule.numbers, positions=molecule.positions)
    count, part = connected_components(bonds(isolated, settings.desorption_mult, settings.skin), directed=False)
    if count == 1:
        return
    members = [np.flatnonzero(part == k) for k in range(count)]
    parts = "; ".join(f"atoms {', '.join(map(str, atoms))} ({molecule[atoms].get_chemical_formula()})"
                      for atoms in members)
    raise ValueError(f"its atoms are not one molecule but {count} unbonded parts (ASE natural_cutoffs x "
                     f"{settings.desorption_mult:g} + {settings.skin:g} Å skin, the anomaly detector's desorption "
                     f"bonds): {parts}" + ("; its cell is periodic: is the molecule split across it? Unwrap it "
                                           "(workflows.screen.adsorbates.unwrap_molecule)" if molecule.pbc.any() else ""))


def unwrap_molecule(atoms: Atoms) -> Atoms:
    """A non-periodic copy of ``atoms`` (read from a file with a periodic cell) with each bonded part
    made whole: walking the bonds (those of :func:`refuse_fragments`, through the periodic images of
    ``atoms.pbc``) from the lowest-index atom of the part, each atom is put at the image bonded to
    the atom it was reached from. A molecule split across the file's cell comes out in one piece;
    atoms without a periodic cell are only copied."""
    molecule = Atoms(atoms.numbers, positions=atoms.positions)
    pbc = np.asarray(atoms.pbc) & (atoms.cell.lengths() > 1e-6)
    if not pbc.any():
        return molecule
    periodic = Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=pbc)
    settings = AnomalySettings()
    neighbours = neighbour_list(periodic, settings.desorption_mult, settings.skin)
    positions = atoms.positions.copy()
    placed = np.zeros(len(atoms), dtype=bool)
    for root in range(len(atoms)):
        if placed[root]:
            continue
        placed[root] = True
        queue = [root]
        while queue:
            i = queue.pop(0)
            indices, offsets = neighbours.get_neighbors(i)
            for j, offset in zip(indices, offsets):
                if not placed[j]:
                    bond = atoms.positions[j] + offset @ periodic.cell[:] - atoms.positions[i]
                    positions[j] = positions[i] + bond
                    placed[j] = True
                    queue.append(j)
    molecule.positions = positions
    return molecule


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
    the library's). Cell and periodicity are dropped, a molecule split across the file's periodic cell
    first made whole (:func:`unwrap_molecule`). ``name`` defaults to the chemical formula.

    Raises ``FileNotFoundError`` for a missing file, ``ValueError`` naming the file for an unreadable
    one, one without atoms, and the bad molecules and binding indices listed in :class:`Adsorbate`.
    """
    source = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"adsorbate file {source!r} does not exist")
    atoms = read_file(path, "a molecule")
    if len(atoms) == 0:
        raise ValueError(f"adsorbate file {source!r} holds no atoms")
    molecule = unwrap_molecule(atoms)  # drops the cell, with a molecule split across it made whole
    try:
        adsorbate = Adsorbate(name or molecule.get_chemical_formula(), molecule, tuple(binding_indices))
    except ValueError as error:
        raise ValueError(f"adsorbate file {source!r}: {error}") from None
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
