"""Initial adsorbate + slab configurations for a screen, after AdsorbML (Lan et al., npj Comput.
Mater. 9, 172 (2023); fairchem-data-oc ``AdsorbateSlabConfig``), seeded and without duplicate sites.

Sites:

- *heuristic*: pymatgen's ``AdsorbateSiteFinder`` symmetry-unique ontop, bridge and hollow sites,
  one placement each (a "bridge" with more than two nearest surface atoms, pymatgen's label for
  the 4-fold hollow of a square lattice, is called a hollow). The surface atoms are handed to it
  (not its 0.9 Å height window, which on a stepped surface keeps only the step edge): the tag-1
  atoms (only those in the slab's upper half when every atom is tagged 1, so that the bottom face
  gives none) with fewer neighbours than the most coordinated (bulk-like) atom of the slab, i.e. the
  atoms facing the vacuum above, where the adsorbate goes.
- *random*: points drawn uniformly (triangles weighted by area, uniform barycentric weights) on
  the Delaunay triangles of the surface atoms of the slab and its eight in-plane images, kept when
  inside the central cell and at least :data:`DEDUP_DISTANCE` from every earlier site (periodic in
  the plane), heuristic ones included. fairchem 2.x draws sites with replacement instead.

Orientation and height: the (first) binding atom goes over the site; a monodentate adsorbate is
turned about the surface normal by a uniform angle and tilted by an angle whose cosine is uniform
in [cos max_tilt, 1] (uniform over the cone's solid angle) toward a uniform direction. A bidentate
one lies with its binding-atom axis along the surface: a uniform direction is drawn, the second
binding atom points toward the site (of all ontop/bridge/hollow sites, not symmetry-reduced) nearest
to where that direction would put it, the molecule is rolled about its binding axis by a uniform
angle in [-max_tilt, max_tilt], and the axis is tilted out of the plane so both binding atoms are
at covalent contact. Height: the binding atom is lowered until it first touches the slab (one
covalent bond length to a slab atom; exact, so it never drops into a hole of an open facet) and the
molecule lifted, if needed, until no other atom is closer than 0.9 bond lengths to a slab atom
(:func:`workflows.data.adsorbates.clearance`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.constraints import FixAtoms
from ase.data import atomic_numbers, covalent_radii
from ase.neighborlist import natural_cutoffs, neighbor_list
from pymatgen.analysis.adsorption import AdsorbateSiteFinder
from pymatgen.io.ase import AseAtomsAdaptor
from scipy.spatial import Delaunay

from workflows.data.adsorbates import clearance, contact_height
from workflows.data.slabs import ADSORBATE_TAG, SUBSURFACE_TAG, SURFACE_TAG, tag_and_fix

from .adsorbates import Adsorbate, adsorption_frame
from .surfaces import SLAB_PBC, prepare_slab

HEURISTIC_SITES: tuple[str, ...] = ("ontop", "bridge", "hollow")
DEDUP_DISTANCE = 0.5  # Å, in-plane, between any two sites of a screen
SYMMETRY_TOLERANCE = 1e-2  # fractional, AdsorbateSiteFinder's symm_reduce default
_NEIGHBOUR_MULTIPLIER = 1.25  # x sum of covalent radii: first neighbours of metals, not second
_MAX_REJECTIONS = 1000  # duplicate random candidates in a row that mean the surface is full
_IN_PLANE_SHIFTS = np.array([(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1)])


@dataclass(frozen=True)
class Placement:
    """One initial configuration: ``config_id`` ("heur-ontop-0", "heur-bridge-1", ..., "rand-0",
    ...; unique in a screen, the same for the same seed), ``site`` ("ontop", "bridge", "hollow" or
    "random"), ``site_position`` (x, y, z in Å: the point of the surface the first binding atom
    sits over) and ``atoms``: slab + adsorbate, tags 0/1/2, ``FixAtoms`` on tag 0, pbc (T, T, F)."""

    config_id: str
    site: str
    site_position: tuple[float, float, float]
    atoms: Atoms


def make_placements(slab: Atoms, adsorbate: Adsorbate, *, heuristic: bool = True, num_random: int = 20,
                    seed: int = 0, max_tilt: float = math.pi / 9) -> list[Placement]:
    """The initial configurations of ``adsorbate`` on ``slab`` (see the module doc for the rules).

    ``slab`` is a tagged slab (:func:`workflows.screen.surfaces.cut_slab` or
    :func:`~workflows.screen.surfaces.prepare_slab`); the heuristic placements come first (if
    ``heuristic``), then ``num_random`` random ones. ``seed`` seeds ``numpy.random.default_rng``:
    the same inputs and seed give the same placements. ``max_tilt`` (rad) bounds the tilt. Each
    placement's atoms is an independent copy.

    Raises ``ValueError`` for a slab :func:`~workflows.screen.surfaces.prepare_slab` rejects,
    ``num_random < 0``, ``max_tilt`` outside [0, pi/2], and when fewer than ``num_random``
    distinct random sites fit on the surface.
    """
    if num_random < 0:
        raise ValueError(f"num_random must be >= 0, got {num_random}")
    if not 0.0 <= max_tilt <= math.pi / 2:
        raise ValueError(f"max_tilt must be in [0, pi/2] rad, got {max_tilt}")
    slab = prepare_slab(slab)
    rng = np.random.default_rng(seed)
    surface = _surface_atoms(slab)
    sites = _heuristic_sites(slab, surface, SYMMETRY_TOLERANCE) if heuristic else []
    sites += [("random", position) for position in
              _random_sites(slab, surface, num_random, [position for _, position in sites], rng)]
    neighbours = None
    if len(adsorbate.binding_indices) == 2:
        neighbours = _images_xy(slab, np.array([p for _, p in _heuristic_sites(slab, surface, 0)])[:, :2])
    placements = []
    for number, (site, position) in enumerate(sites):
        molecule = _oriented(slab, adsorbate, position, neighbours, max_tilt, rng)
        adslab = slab.copy()
        molecule.set_tags(ADSORBATE_TAG)
        adslab.extend(molecule)
        adslab.set_constraint(FixAtoms(indices=np.flatnonzero(adslab.get_tags() == SUBSURFACE_TAG)))
        adslab.pbc = SLAB_PBC
        config_id = f"heur-{site}-{number}" if site != "random" else f"rand-{number - (len(sites) - num_random)}"
        placements.append(Placement(config_id, site, tuple(float(x) for x in position), adslab))
    return placements


def _surface_atoms(slab: Atoms) -> np.ndarray:
    """Indices of the surface atoms facing the vacuum above: tag 1 (and, when every atom of the slab is
    tagged 1, in the upper half, :func:`_upper_half`, so that the bottom face gives none; tags the user
    set otherwise are kept as they are, an adatom or a lower layer tagged 1 included) and with fewer
    neighbours (within 1.25 x the sum of covalent radii) than the slab's most coordinated atom; when all
    those are as coordinated (a thin slab), the ones within 0.9 Å of the highest (pymatgen's rule)."""
    first, second = neighbor_list("ij", slab, natural_cutoffs(slab, mult=_NEIGHBOUR_MULTIPLIER))
    coordination = np.bincount(first, minlength=len(slab))
    tagged = slab.get_tags() == SURFACE_TAG
    if tagged.all():
        tagged &= _upper_half(slab)
    surface = np.flatnonzero(tagged & (coordination < coordination.max()))
    if len(surface) == 0:
        z = slab.positions[:, 2]
        surface = np.flatnonzero(tagged & (z > z[tagged].max() - 0.9))
    return surface


def _upper_half(slab: Atoms) -> np.ndarray:
    """Mask of the atoms of ``slab`` above its mid-height, which :func:`workflows.data.slabs.tag_and_fix`
    tags as surface; every atom when the slab is a single plane."""
    upper = tag_and_fix(slab.copy()).get_tags() == SURFACE_TAG
    return upper if upper.any() else np.ones(len(slab), dtype=bool)


def _heuristic_sites(slab: Atoms, surface: np.ndarray, symm_reduce: float) -> list[tuple[str, np.ndarray]]:
    """pymatgen's ontop, bridge and hollow sites (Å, on the surface: distance 0) of ``slab`` with
    the surface atoms ``surface``, symmetry-reduced within ``symm_reduce`` (0: all of them)."""
    structure = AseAtomsAdaptor.get_structure(slab)
    is_surface = np.isin(np.arange(len(slab)), surface)
    structure.add_site_property("surface_properties", ["surface" if s else "subsurface" for s in is_surface])
    found = AdsorbateSiteFinder(structure).find_adsorption_sites(
        distance=0.0, symm_reduce=symm_reduce, positions=HEURISTIC_SITES)
    atoms_xy = _images_xy(slab, slab.positions[surface, :2])
    sites = []
    for kind in HEURISTIC_SITES:
        for position in found[kind]:
            distance = np.linalg.norm(atoms_xy - position[:2], axis=1)
            fourfold = kind == "bridge" and np.count_nonzero(distance < distance.min() + 0.1) > 2
            # pymatgen's "bridge" across a square's diagonal is a 4-fold hollow
            sites.append(("hollow" if fourfold else kind, np.asarray(position, dtype=float)))
    return sorted(sites, key=lambda site: HEURISTIC_SITES.index(site[0]))


def _random_sites(slab: Atoms, surface: np.ndarray, count: int, taken: list[np.ndarray],
                  rng: np.random.Generator) -> list[np.ndarray]:
    """``count`` random surface points (Å) of ``slab``, none within :data:`DEDUP_DISTANCE` (in-plane,
    periodic) of another or of the ``taken`` ones."""
    if count == 0:
        return []
    points = _images_xyz(slab, slab.positions[surface])
    triangles = points[Delaunay(points[:, :2]).simplices]  # (n_triangles, 3 corners, xyz)
    edges = triangles[:, 1:, :2] - triangles[:, :1, :2]
    areas = 0.5 * np.abs(edges[:, 0, 0] * edges[:, 1, 1] - edges[:, 0, 1] * edges[:, 1, 0])
    inverse = np.linalg.inv(slab.cell[:2, :2])
    kept = [np.asarray(p, dtype=float) for p in taken]
    drawn: list[np.ndarray] = []
    rejected = 0  # in-cell candidates rejected in a row
    while rejected < _MAX_REJECTIONS:
        chosen = rng.choice(len(triangles), size=8 * count, p=areas / areas.sum())
        weights = rng.dirichlet(np.ones(3), size=8 * count)
        for candidate in np.einsum("nk,nkx->nx", weights, triangles[chosen]):
            fraction = candidate[:2] @ inverse
            if np.any(fraction < 0.0) or np.any(fraction >= 1.0):
                continue
            if kept and _in_plane_distance(slab, np.array(kept)[:, :2], candidate[:2]).min() < DEDUP_DISTANCE:
                rejected += 1
                if rejected == _MAX_REJECTIONS:
                    break
                continue
            rejected = 0
            kept.append(candidate)
            drawn.append(candidate)
            if len(drawn) == count:
                return drawn
    raise ValueError(f"only {len(drawn)} of the {count} random sites asked for fit on this surface "
                     f"{DEDUP_DISTANCE} Å apart: ask for fewer or use a larger slab")


def _oriented(slab: Atoms, adsorbate: Adsorbate, site: np.ndarray, neighbours: np.ndarray | None,
              max_tilt: float, rng: np.random.Generator) -> Atoms:
    """The adsorbate turned at random and set on ``site`` (Å) at contact height, atoms in their
    original order; ``neighbours`` are the xy (Å) of every site and its in-plane images."""
    binding = adsorbate.binding_indices
    order = [*binding, *(i for i in range(len(adsorbate.atoms)) if i not in binding)]
    if len(binding) == 1:
        molecule = adsorbate.atoms.copy()
        molecule.translate(-molecule.positions[binding[0]])
        molecule.rotate(math.degrees(rng.uniform(0.0, 2.0 * math.pi)), "z")
        tilt = math.acos(rng.uniform(math.cos(max_tilt), 1.0))
        direction = rng.uniform(0.0, 2.0 * math.pi)
        molecule.rotate(math.degrees(tilt), (math.cos(direction), math.sin(direction), 0.0))
        height = contact_height(slab, site[:2], molecule[binding[0]].symbol)
        molecule.translate((site[0], site[1], height))
    else:
        molecule = adsorption_frame(adsorbate.atoms, binding)  # binding axis along +x, the rest above
        molecule.rotate(math.degrees(rng.uniform(-max_tilt, max_tilt)), "x")
        length = molecule.positions[binding[1], 0]
        direction = rng.uniform(0.0, 2.0 * math.pi)
        aim = site[:2] + length * np.array([math.cos(direction), math.sin(direction)])
        offsets = neighbours - site[:2]
        candidates = neighbours[np.linalg.norm(offsets, axis=1) > 0.3]  # not the site itself
        toward = candidates[np.argmin(np.linalg.norm(candidates - aim, axis=1))] - site[:2]
        toward /= np.linalg.norm(toward)
        molecule.rotate(math.degrees(math.atan2(toward[1], toward[0])), "z")
        first, second = (molecule[i].symbol for i in binding)
        height = contact_height(slab, site[:2], first)
        rise = _contact_rise(slab, site[:2], height, toward, length, second)
        horizontal = np.array([toward[0], toward[1], 0.0])
        molecule.rotate(horizontal, math.cos(rise) * horizontal + (0.0, 0.0, math.sin(rise)))
        molecule.translate((site[0], site[1], height))
    molecule.translate((0.0, 0.0, clearance(slab, molecule[order])))
    return molecule


def _contact_rise(slab: Atoms, xy: np.ndarray, height: float, toward: np.ndarray, length: float,
                  symbol: str) -> float:
    """The angle (rad) above the surface plane of the axis from a binding atom at (``xy``, ``height``)
    to a second one ``length`` Å away in the in-plane direction ``toward``, of element ``symbol``,
    at which the second atom first touches the slab when the axis is swung down from straight up
    (5 degree scan, then bisection to 1e-4 rad)."""
    def gap(rise: float) -> float:  # Å: height of the second atom above its contact height
        second_xy = xy + length * math.cos(rise) * toward
        return height + length * math.sin(rise) - contact_height(slab, second_xy, symbol)

    high = math.pi / 2  # straight up: gap = length > 0; straight down (-pi/2): gap = -length < 0
    for low in np.linspace(math.pi / 2, -math.pi / 2, 37)[1:]:
        if gap(low) < 0:
            break
        high = low
    while high - low > 1e-4:
        middle = 0.5 * (low + high)
        low, high = (middle, high) if gap(middle) < 0 else (low, middle)
    return high


def _images_xyz(slab: Atoms, points: np.ndarray) -> np.ndarray:
    """``points`` (n, 3; Å) and their eight in-plane periodic images: (9 n, 3)."""
    shifts = _IN_PLANE_SHIFTS @ slab.cell[:2]
    return (points[None, :, :] + shifts[:, None, :]).reshape(-1, 3)


def _images_xy(slab: Atoms, points: np.ndarray) -> np.ndarray:
    """``points`` (n, 2; Å) and their eight in-plane periodic images: (9 n, 2)."""
    shifts = _IN_PLANE_SHIFTS @ slab.cell[:2, :2]
    return (points[None, :, :] + shifts[:, None, :]).reshape(-1, 2)


def _in_plane_distance(slab: Atoms, points: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Shortest in-plane periodic distances (Å) from ``point`` (2,) to each of ``points`` (n, 2)."""
    inverse = np.linalg.inv(slab.cell[:2, :2])
    fraction = (points - point) @ inverse
    wrapped = (fraction - np.round(fraction)) @ slab.cell[:2, :2]
    return np.linalg.norm(_images_xy(slab, wrapped).reshape(9, -1, 2), axis=2).min(axis=0)
