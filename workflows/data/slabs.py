"""Slabs cut from the bulks, tagged and constrained as in OC20.

Every slab is periodic in x and y, with its surface normal along z and 6 Å of vacuum on each
side (12 Å between periodic images). Atoms in the lower half of the slab are subsurface: tag 0
and fixed (:class:`ase.constraints.FixAtoms`); the upper half is the surface: tag 1, free.
Adsorbate atoms, added later, get tag 2.

Pure metals use ASE's standard cells (``ase.build.fcc111`` etc.), 24-36 atoms; L1_2 alloys are cut
from their 4-atom cubic cell with ``ase.build.surface`` (the smallest surface cells of the ordered
alloy), 16-32 atoms.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import fcc100, fcc110, fcc111, fcc211, surface
from ase.constraints import FixAtoms

from .bulks import METALS, conventional_cell, lattice_constant

FACETS: tuple[str, ...] = ("111", "100", "110", "211")
VACUUM = 6.0  # Å on each side of the slab

#: pure metals: (ASE builder, (n_x, n_y, layers)).
_METAL_SLABS = {
    "111": (fcc111, (3, 3, 4)), "100": (fcc100, (3, 3, 4)),
    "110": (fcc110, (2, 3, 5)), "211": (fcc211, (3, 3, 4)),
}
#: L1_2 alloys: (Miller indices of the cubic cell, surface() layers, in-plane repeat).
_ALLOY_SLABS = {
    "111": ((1, 1, 1), 4, (1, 1)), "100": ((1, 0, 0), 2, (2, 2)),
    "110": ((1, 1, 0), 3, (1, 2)), "211": ((2, 1, 1), 4, (1, 2)),
}

SURFACE_TAG, SUBSURFACE_TAG, ADSORBATE_TAG = 1, 0, 2


def make_slab(bulk: str, facet: str) -> Atoms:
    """The clean ``facet`` slab of ``bulk``, tagged and with its subsurface fixed.

    ``bulk`` is a name from :data:`workflows.data.bulks.BULKS`, ``facet`` one of :data:`FACETS`;
    ``KeyError`` otherwise.
    """
    if bulk in METALS:
        builder, size = _METAL_SLABS[facet]
        slab = builder(bulk, size, a=lattice_constant(bulk), vacuum=VACUUM)
    else:
        miller, layers, repeat = _ALLOY_SLABS[facet]
        slab = surface(conventional_cell(bulk), miller, layers, vacuum=VACUUM).repeat((*repeat, 1))
    slab.wrap()
    return tag_and_fix(slab)


def tag_and_fix(slab: Atoms) -> Atoms:
    """``slab`` with OC20 tags: 1 above the slab's mid-height (surface, free), 0 below (subsurface,
    fixed by a ``FixAtoms`` constraint, which replaces any other constraint)."""
    z = slab.positions[:, 2]
    middle = 0.5 * (z.min() + z.max())
    surface_atoms = z > middle + 0.1  # Å: an atomic plane at mid-height counts as subsurface
    slab.set_tags(np.where(surface_atoms, SURFACE_TAG, SUBSURFACE_TAG))
    slab.set_constraint(FixAtoms(indices=np.flatnonzero(~surface_atoms)))
    return slab
