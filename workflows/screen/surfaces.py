"""Surfaces for a screen: a bulk read or built in, cut into a tagged, tiled slab, or a ready slab.

Slabs follow OC20/AdsorbML (fairchem-data-oc ``Slab``): pymatgen's ``SlabGenerator`` (7 Å of
material, centred, primitive surface cell), tiled in-plane to at least 8 Å, surface normal along
z, periodic in x and y only, the upper half tagged 1 (surface, free) and the lower half tagged 0
(subsurface, fixed) by :func:`workflows.data.slabs.tag_and_fix`. The vacuum is 6 Å on each side,
as in the slabs the shipped potentials were trained on (:mod:`workflows.data.slabs`).
"""

from __future__ import annotations

import math
import os
from numbers import Integral

import numpy as np
from ase import Atoms
from ase.constraints import FixAtoms
from ase.geometry import minkowski_reduce
from ase.io import read
from ase.io.formats import UnknownFileTypeError
from ase.neighborlist import neighbor_list
from pymatgen.core.surface import SlabGenerator
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from workflows.data.bulks import BULKS, conventional_cell
from workflows.data.frames import MIN_DISTANCE
from workflows.data.slabs import ADSORBATE_TAG, SUBSURFACE_TAG, SURFACE_TAG, VACUUM, tag_and_fix

SLAB_PBC = (True, True, False)
#: Å: the least vacuum gap along the normal a slab file may have: the widest gap between the atoms' planes
#: along c, taken periodically (a slab wrapped across the cell's top and bottom has its gap in the middle
#: of the cell). Cut slabs have 2 x VACUUM = 12 Å; below 6 Å the gap is no wider than the tallest
#: adsorbates standing on the surface (up to ~5 Å from the binding atom's slab neighbours to the top H),
#: a periodic reference calculator (DFT) sees the slab's bottom face through it, and a bulk cell (its gap
#: is one interlayer spacing, ~2 Å) is no slab at all.
MIN_SLAB_VACUUM = 6.0
#: Å: the shortest in-plane period a slab file may have. Cut slabs are tiled to at least 8 Å; a 1x1
#: surface cell of a metal (2.5-2.9 Å) puts the adsorbate at full coverage, within van der Waals contact
#: of its own periodic images (O...O 3.0 Å). 3.5 Å still accepts the small cells common in DFT work:
#: sqrt(3) x sqrt(3) R30 (111) cells (Ni 4.31 Å, Cu 4.42 Å) and c(2x2) (100) cells (Cu 3.61 Å).
MIN_SLAB_PERIOD = 3.5


def read_file(path: str | os.PathLike, what: str) -> Atoms:
    """The structure in the file ``path`` (an existing file); ``ValueError`` naming the file and
    ``what`` was wanted when ASE cannot read it."""
    try:
        return read(path)
    except (UnknownFileTypeError, ValueError, KeyError, IndexError, StopIteration) as error:
        raise ValueError(f"cannot read {what} from {os.fspath(path)!r}: {error}") from error


def refuse_coinciding_atoms(atoms: Atoms) -> None:
    """Raise ``ValueError`` naming the first two atoms of ``atoms`` (indices, symbols; or an atom and a
    periodic image of another, along the periodic axes of ``atoms.pbc``) closer than
    :data:`workflows.data.frames.MIN_DISTANCE` (0.5 Å), a broken geometry no calculator can relax."""
    first, second, distance, shift = neighbor_list("ijdS", atoms, MIN_DISTANCE)
    if len(first) == 0:
        return
    i, j = sorted((int(first[0]), int(second[0])))
    image = f" through a periodic image (cell shift {tuple(shift[0].tolist())})" if shift[0].any() else ""
    raise ValueError(f"atoms {i} ({atoms[i].symbol}) and {j} ({atoms[j].symbol}) coincide{image}: "
                     f"{distance[0]:.3g} Å apart, closer than {MIN_DISTANCE} Å")


def vacuum_gap(slab: Atoms) -> tuple[float, float]:
    """The vacuum gap of ``slab`` along its c axis, periodically: ``(gap, start)``, ``gap`` the widest
    distance (Å, along c) between consecutive atomic planes, the one across the cell's top and bottom
    included, and ``start`` the fractional c coordinate (in [0, 1)) of the atom just above that gap,
    where the slab begins. A slab centred in its cell has its gap across the cell boundary; one wrapped
    across the top and bottom has it inside the cell; a bulk cell has one interlayer spacing."""
    fractions = np.sort(np.mod(slab.get_scaled_positions(wrap=False)[:, 2], 1.0))
    gaps = np.append(np.diff(fractions), fractions[0] + 1.0 - fractions[-1])
    widest = len(gaps) - 1 if gaps[-1] >= gaps.max() else int(np.argmax(gaps))  # ties: keep the boundary one
    return float(gaps[widest] * np.linalg.norm(slab.cell[2])), float(fractions[(widest + 1) % len(fractions)])


def join_across_boundary(slab: Atoms) -> None:
    """Make ``slab`` (in place) one contiguous block along c: when its atoms' extent along c is not the
    cell height minus its :func:`vacuum_gap` (a slab wrapped across the cell's top and bottom, or one
    with atoms outside the cell), shift them along c, periodically, so the slab is centred in the cell
    with the gap split above and below; a contiguous slab is left where it is."""
    gap, start = vacuum_gap(slab)
    height = float(np.linalg.norm(slab.cell[2]))
    if abs(np.ptp(slab.get_scaled_positions(wrap=False)[:, 2]) * height - (height - gap)) < 1e-6:
        return
    scaled = slab.get_scaled_positions(wrap=False)
    scaled[:, 2] = np.mod(scaled[:, 2] - start, 1.0) + 0.5 * gap / height
    slab.set_scaled_positions(scaled)


def refuse_unfit_cell(slab: Atoms) -> None:
    """Raise ``ValueError`` with the measured value when the slab ``slab`` (cell c along z) has a
    vacuum gap along z (:func:`vacuum_gap`: the widest gap between its atoms along c, periodically)
    under :data:`MIN_SLAB_VACUUM` Å (a bulk cell, a slab periodic in z without a gap), or a shortest
    in-plane lattice vector under :data:`MIN_SLAB_PERIOD` Å (the adsorbate would touch its own
    periodic images)."""
    height = float(np.linalg.norm(slab.cell[2]))
    gap = vacuum_gap(slab)[0]
    if gap < MIN_SLAB_VACUUM:
        raise ValueError(f"the slab has a vacuum gap along z of {gap:.3g} Å (cell height {height:.3g} Å, "
                         f"atoms spanning {height - gap:.3g} Å), under the {MIN_SLAB_VACUUM} Å needed: is it a bulk "
                         "cell or a slab periodic in z? Give a slab with vacuum above and below")
    period = float(np.linalg.norm(minkowski_reduce(slab.cell, pbc=SLAB_PBC)[0][:2], axis=1).min())
    if period < MIN_SLAB_PERIOD:
        raise ValueError(f"the slab repeats every {period:.3g} Å in-plane (its shortest in-plane lattice vector), "
                         f"under the {MIN_SLAB_PERIOD} Å needed to keep the adsorbate off its own periodic images: "
                         "repeat it in-plane (e.g. ase's atoms.repeat((3, 3, 1)))")


def read_bulk(spec: str | os.PathLike | Atoms) -> Atoms:
    """A periodic bulk crystal: ``spec`` is a built-in name of :data:`workflows.data.bulks.BULKS`
    (its 4-atom conventional cubic cell, with the lattice constants the shipped potentials were
    trained on), a file any ASE reader takes (CIF, POSCAR, extxyz with a lattice...) or an Atoms.

    Raises ``FileNotFoundError`` for a name that is neither built in nor a file, ``ValueError``
    for an unreadable file or a structure not periodic in all three directions.
    """
    if isinstance(spec, Atoms):
        bulk, source = spec.copy(), "the given Atoms"
    elif isinstance(spec, str) and spec in BULKS:
        return conventional_cell(spec)
    else:
        source = repr(os.fspath(spec))
        if not os.path.isfile(spec):
            raise FileNotFoundError(f"bulk {source} is neither a built-in bulk ({', '.join(BULKS)}) nor a file")
        bulk = read_file(spec, "a bulk crystal")
    if len(bulk) == 0 or not bulk.pbc.all() or abs(bulk.cell.volume) < 1e-6:
        raise ValueError(f"bulk {source} is not a crystal periodic in 3-D (pbc {bulk.pbc.tolist()}, "
                         f"cell volume {abs(bulk.cell.volume):.3g} Å^3)")
    return bulk


def cut_slab(bulk: Atoms, miller: tuple[int, int, int], *, min_slab_size: float = 7.0,
              min_lateral: float = 8.0, vacuum: float = VACUUM, termination: int = 0) -> Atoms:
    """The ``miller`` slab of ``bulk``: tagged 0/1, subsurface fixed, pbc (T, T, F).

    ``miller`` is given in the conventional standard cell of ``bulk`` (pymatgen's
    ``SpacegroupAnalyzer``, as fairchem-data-oc). pymatgen's ``SlabGenerator`` (at least
    ``min_slab_size`` Å of material, centred, primitive surface cell) gives the terminations,
    sorted by shift; the ``termination``-th one gets an orthogonal c axis, is turned so its normal
    is z, gets ``vacuum`` Å above and below, and is repeated in-plane until both in-plane cell
    lengths are at least ``min_lateral`` Å. N_atoms grows with the tiling (e.g. 64 for Cu(111)).

    Raises ``ValueError`` for a Miller index that is not three integers, is (0, 0, 0) or gives
    no slab, and for a ``termination`` out of range (the message says how many there are).
    """
    if (len(miller) != 3 or not all(isinstance(h, Integral) and not isinstance(h, bool) for h in miller)):
        raise ValueError(f"Miller index {miller!r} is not three integers")
    if not any(miller):
        raise ValueError("Miller index (0, 0, 0) names no plane")
    structure = SpacegroupAnalyzer(AseAtomsAdaptor.get_structure(bulk)).get_conventional_standard_structure()
    generator = SlabGenerator(structure, tuple(int(h) for h in miller), min_slab_size, min_vacuum_size=2 * vacuum,
                              center_slab=True, primitive=True, in_unit_planes=False)
    slabs = sorted(generator.get_slabs(), key=lambda slab: slab.shift)
    if not slabs:
        raise ValueError(f"pymatgen makes no {tuple(miller)} slab of {bulk.get_chemical_formula()}")
    if not 0 <= termination < len(slabs):
        raise ValueError(f"termination {termination} is out of range: the {tuple(miller)} slab of "
                         f"{bulk.get_chemical_formula()} has {len(slabs)} termination(s), 0..{len(slabs) - 1}")
    cut = AseAtomsAdaptor.get_atoms(slabs[termination].get_orthogonal_c_slab())
    cell = minkowski_reduce(cut.cell, pbc=SLAB_PBC)[0]  # the shortest in-plane axes, c unchanged
    if np.linalg.det(cell) < 0:  # keep the cell right-handed so that c, the normal, ends along +z
        cell = cell[[1, 0, 2]]
    slab = Atoms(cut.numbers, positions=cut.positions, cell=cell, pbc=SLAB_PBC)
    slab.set_cell(slab.cell.standard_form()[0], scale_atoms=True)
    slab.wrap()
    slab.center(vacuum=vacuum, axis=2)
    lengths = np.linalg.norm(slab.cell[:2], axis=1)
    slab = slab.repeat((*(math.ceil(min_lateral / length - 1e-9) for length in lengths), 1))
    return tag_and_fix(slab)


def prepare_slab(slab: Atoms) -> Atoms:
    """A ready slab (read from a file) made fit for placement: a copy with tags 0/1 and ``FixAtoms``
    on the tag-0 atoms, pbc (T, T, F). A slab wrapped across the cell's top and bottom is first made
    contiguous, centred in its cell (:func:`join_across_boundary`).

    Tags 0/1 are kept when the slab has surface (tag 1) atoms, else assigned by
    :func:`workflows.data.slabs.tag_and_fix` (upper half 1, lower half 0); so are ASE's layer numbers
    (tags 1..n from ``ase.build.fcc111`` and the like, n > 2), which are replaced. Raises ``ValueError``
    for an empty slab, a cell whose a and b axes are not in the xy plane or whose c axis is not
    along z, atoms that coincide (:func:`refuse_coinciding_atoms`), too little vacuum or too short an
    in-plane period (:func:`refuse_unfit_cell`), atoms already tagged 2 (an adsorbate) or any tag other
    than 0/1/2, and a slab left with no surface atom (e.g. a single flat layer).
    """
    slab = slab.copy()
    if len(slab) == 0:
        raise ValueError("the slab has no atoms")
    cell = np.array(slab.cell)
    c_length = np.linalg.norm(cell[2])
    if c_length < 1e-6 or np.linalg.norm(cell[2, :2]) > 1e-6 * c_length or np.any(np.abs(cell[:2, 2]) > 1e-6):
        raise ValueError("the slab's cell must have a and b in the xy plane and c along z (the surface normal); "
                         f"got cell {np.round(cell, 3).tolist()}")
    slab.pbc = SLAB_PBC
    refuse_coinciding_atoms(slab)
    refuse_unfit_cell(slab)
    join_across_boundary(slab)  # before any height is compared: tags, the surface atoms
    tags = slab.get_tags()
    if tags.min() >= 1 and tags.max() > SURFACE_TAG and set(np.unique(tags)) == set(range(1, tags.max() + 1)):
        tags = np.zeros(len(slab), dtype=int)  # ASE's surface builders number the layers 1..n from the top
        slab.set_tags(tags)
    if np.any(tags == ADSORBATE_TAG):
        raise ValueError(f"the slab has {np.count_nonzero(tags == ADSORBATE_TAG)} atom(s) tagged "
                         f"{ADSORBATE_TAG} (adsorbate): give a clean slab")
    unknown = set(np.unique(tags)) - {SUBSURFACE_TAG, SURFACE_TAG}
    if unknown:
        raise ValueError(f"the slab has tags {sorted(unknown)}; only {SUBSURFACE_TAG} (subsurface) and "
                         f"{SURFACE_TAG} (surface) are allowed")
    if np.any(tags == SURFACE_TAG):
        slab.set_constraint(FixAtoms(indices=np.flatnonzero(tags == SUBSURFACE_TAG)))
    else:
        tag_and_fix(slab)
    if not np.any(slab.get_tags() == SURFACE_TAG):
        raise ValueError("the slab has no surface atoms (tag 1): all its atoms lie in one plane")
    return slab
