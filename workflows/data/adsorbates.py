"""Adsorbates (OC20's ``*X`` species), their gas-phase molecules and their placement on slabs.

Each adsorbate is drawn with its binding atom first, at the origin, and the rest of the molecule
above it (+z), so that it stands on the surface as it binds. A placement puts the binding atom over
a site (top, bridge, hollow or a random point of the surface cell), turns the molecule by a
random angle about the surface normal and tilts it by up to 20 degrees, and lowers it until the
binding atom is one covalent bond length (sum of covalent radii) from its nearest slab atom.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, covalent_radii

from .slabs import ADSORBATE_TAG, SURFACE_TAG

# Binding atom first, at the origin; positions in Å; molecules stand along +z.
_TETRAHEDRAL_H = [(1.03, 0.0, 0.36), (-0.515, 0.89, 0.36), (-0.515, -0.89, 0.36)]  # C-H 1.09 Å
ADSORBATES: dict[str, tuple[tuple[str, tuple[float, float, float]], ...]] = {
    "H": (("H", (0, 0, 0)),),
    "O": (("O", (0, 0, 0)),),
    "N": (("N", (0, 0, 0)),),
    "C": (("C", (0, 0, 0)),),
    "OH": (("O", (0, 0, 0)), ("H", (0, 0, 0.97))),
    "CO": (("C", (0, 0, 0)), ("O", (0, 0, 1.15))),
    "NO": (("N", (0, 0, 0)), ("O", (0, 0, 1.16))),
    "N2": (("N", (0, 0, 0)), ("N", (0, 0, 1.12))),
    "NH": (("N", (0, 0, 0)), ("H", (0, 0, 1.02))),
    "NH2": (("N", (0, 0, 0)), ("H", (0.81, 0, 0.62)), ("H", (-0.81, 0, 0.62))),
    "CH": (("C", (0, 0, 0)), ("H", (0, 0, 1.09))),
    "CH2": (("C", (0, 0, 0)), ("H", (0.89, 0, 0.63)), ("H", (-0.89, 0, 0.63))),
    "CH3": (("C", (0, 0, 0)), *(("H", p) for p in _TETRAHEDRAL_H)),
    "OCH3": (("O", (0, 0, 0)), ("C", (0, 0, 1.42)),
             *(("H", (x, y, 1.42 + z)) for x, y, z in _TETRAHEDRAL_H)),
    "H2O": (("O", (0, 0, 0)), ("H", (0.76, 0, 0.59)), ("H", (-0.76, 0, 0.59))),
    "COH": (("C", (0, 0, 0)), ("O", (0, 0, 1.33)), ("H", (0.91, 0, 1.66))),
    "CHO": (("C", (0, 0, 0)), ("O", (0.6, 0, 1.04)), ("H", (-0.95, 0, 0.55))),
}

SITES: tuple[str, ...] = ("top", "bridge", "hollow", "random")
MAX_TILT = np.pi / 9  # rad, as fairchem's placement
_IN_PLANE_IMAGES = np.array([(i, j, 0) for i in (-1, 0, 1) for j in (-1, 0, 1)])  # cell shifts


def adsorbate_elements(name: str) -> frozenset[str]:
    """The elements of the adsorbate ``name``."""
    return frozenset(symbol for symbol, _ in ADSORBATES[name])


def make_adsorbate(name: str) -> Atoms:
    """The adsorbate ``name`` (a key of :data:`ADSORBATES`), binding atom first at the origin."""
    symbols, positions = zip(*ADSORBATES[name])
    return Atoms(symbols, positions=positions)


def gas_molecule(name: str, box: float = 12.0) -> Atoms:
    """The adsorbate ``name`` as a free molecule, centred in a non-periodic cubic box of ``box`` Å."""
    return boxed(make_adsorbate(name), box)


def boxed(molecule: Atoms, box: float = 12.0) -> Atoms:
    """A copy of ``molecule``, non-periodic, centred in a cubic box of ``box`` Å."""
    molecule = molecule.copy()
    molecule.pbc = False
    molecule.set_cell([box, box, box])
    molecule.center()
    return molecule


def place_adsorbate(slab: Atoms, name: str, rng: np.random.Generator) -> Atoms:
    """``slab`` with the adsorbate ``name`` on a random site of its top surface (tag 2).

    The site kind is drawn uniformly from :data:`SITES`; the slab is not changed.
    """
    site = SITES[rng.integers(len(SITES))]
    xy = _site_xy(slab, site, rng)
    rotation = rng.uniform(0.0, 2.0 * np.pi)
    tilt = rng.uniform(0.0, MAX_TILT)
    adsorbate = make_adsorbate(name)
    adsorbate.rotate(np.degrees(tilt), "x")
    adsorbate.rotate(np.degrees(rotation), "z")
    height = contact_height(slab, xy, adsorbate[0].symbol)
    adsorbate.translate([xy[0], xy[1], height])
    adsorbate.translate([0.0, 0.0, clearance(slab, adsorbate)])
    adsorbate.set_tags(ADSORBATE_TAG)
    adslab = slab.copy()
    adslab.extend(adsorbate)  # the slab's FixAtoms indices stay valid: adsorbate atoms come last
    return adslab


def _top_atoms(slab: Atoms) -> np.ndarray:
    """Indices of the surface atoms within 1 Å of the highest one: the sites' anchors (on a
    stepped surface, the step-edge row)."""
    z = slab.positions[:, 2]
    return np.flatnonzero((slab.get_tags() == SURFACE_TAG) & (z > z.max() - 1.0))


def _site_xy(slab: Atoms, site: str, rng: np.random.Generator) -> np.ndarray:
    """The (x, y) of a ``site`` of ``slab`` (Å): over a top atom, between it and its nearest top
    neighbour, at the centre of it and its two nearest top neighbours, or a random point."""
    cell = slab.cell[:2, :2]
    if site == "random":
        return rng.uniform(0.0, 1.0, 2) @ cell
    top = _top_atoms(slab)
    anchor = slab.positions[top[rng.integers(len(top))], :2]
    if site == "top":
        return anchor
    # nearest periodic images (in-plane) of the other top atoms around the anchor
    shifts = _IN_PLANE_IMAGES[:, :2] @ cell
    images = (slab.positions[top, :2][:, None, :] + shifts[None, :, :]).reshape(-1, 2)
    distance = np.linalg.norm(images - anchor, axis=1)
    neighbours = images[np.argsort(distance)[1:3]]  # [0] is the anchor itself
    if site == "bridge":
        return 0.5 * (anchor + neighbours[0])
    return (anchor + neighbours[0] + neighbours[1]) / 3.0


def _images(slab: Atoms) -> np.ndarray:
    """Positions (Å) of the slab atoms and their eight in-plane periodic neighbours' images."""
    shifts = _IN_PLANE_IMAGES @ slab.cell
    return (slab.positions[:, None, :] + shifts[None, :, :]).reshape(-1, 3)


def _bond_length(slab: Atoms, symbol: str) -> np.ndarray:
    """Covalent bond lengths (Å) from an atom ``symbol`` to each slab atom's periodic images, in the
    order of :func:`_images`."""
    radii = covalent_radii[slab.numbers] + covalent_radii[atomic_numbers[symbol]]
    return np.repeat(radii, 9)


def contact_height(slab: Atoms, xy: np.ndarray, symbol: str) -> float:
    """The height z (Å) at which an atom ``symbol`` lowered from above over ``xy`` first touches the
    slab: one covalent bond length (sum of covalent radii) from a slab atom or an in-plane image.

    Exact: the highest contact over all atoms under it, so an atom over a hole of an open facet
    (fcc(110), fcc(100)) stops on the atoms around the hole, never inside the slab.
    """
    bond = _bond_length(slab, symbol)
    images = _images(slab)
    horizontal2 = np.sum((images[:, :2] - xy) ** 2, axis=1)
    under = horizontal2 < bond**2
    if not np.any(under):
        return float(slab.positions[:, 2].max())
    return float(np.max(images[under, 2] + np.sqrt(bond[under] ** 2 - horizontal2[under])))


def clearance(slab: Atoms, adsorbate: Atoms) -> float:
    """How far (Å) to lift ``adsorbate`` so that none of its non-binding atoms is closer to a slab
    atom than 0.9 covalent bond lengths (0 when none is)."""
    lift = 0.0
    for atom in adsorbate[1:]:
        bond = 0.9 * _bond_length(slab, atom.symbol)
        offset = _images(slab) - atom.position
        # smallest dz >= 0 with |offset - dz e_z| >= bond for every slab atom image
        horizontal2 = np.sum(offset[:, :2] ** 2, axis=1)
        close = horizontal2 < bond**2
        if np.any(close):
            needed = offset[close, 2] + np.sqrt(bond[close] ** 2 - horizontal2[close])
            lift = max(lift, float(np.max(needed)))
    return lift

