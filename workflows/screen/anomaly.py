"""Anomalous relaxed adsorption configurations, flagged by bond connectivity as AdsorbML does.

Follows fairchem's ``DetectTrajAnomaly`` (``fairchem/data/oc/utils/flag_anomaly.py``; Lan et al., npj
Comput. Mater. 9, 172 (2023), "AdsorbML"). Two atoms are bonded when ASE's
``NeighborList(natural_cutoffs(atoms, mult), self_interaction=False, bothways=True, skin=skin)`` lists them
as neighbours, i.e. (ASE adds the skin to each atom's radius) when, through some periodic image allowed by
the Atoms' ``pbc``,

    d_ij < mult * (r_i + r_j) + 2 * skin        [Å; r = ASE's covalent radius]

Tags follow OC20: 0 subsurface (fixed), 1 surface, 2 adsorbate; tags are read from ``initial``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import numpy as np
from ase import Atoms
from ase.neighborlist import NeighborList, natural_cutoffs

from workflows.data.slabs import ADSORBATE_TAG, SUBSURFACE_TAG, SURFACE_TAG

ANOMALIES: tuple[str, ...] = ("dissociated", "desorbed", "surface_changed", "intercalated", "non_finite")
#: what the screen adds for a relaxation that did not finish: the calculator raised, or the graph
#: builder refused the geometry (atoms that coincide)
FAILED = "failed"

#: Å: largest difference between the clean slab's and the adslab's periodic cell vectors
CELL_TOLERANCE = 1e-3


def _is_real(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class AnomalySettings:
    """Thresholds of :func:`detect_anomalies` (fairchem's defaults).

    Attributes:
        final_slab_mult: ``natural_cutoffs`` multiplier for a bond to exist: the adsorbate's bonds
            (dissociation), adsorbate-subsurface bonds (intercalation) and the un-cushioned side of the
            surface-change test.
        init_slab_mult: the cushion of the surface-change test: a bond of one slab must be missing
            from the other even at this multiplier for the surface to count as changed.
        desorption_mult: multiplier of adsorbate-slab bonds in the desorption test.
        skin: Å added to every atom's radius (ASE ``NeighborList``'s default, as fairchem uses it).
        intercalation: whether to test intercalation (fairchem 2.x does; the AdsorbML paper did not).

    Raises:
        ValueError: a multiplier that is not a positive finite number, or a negative or non-finite skin.
    """

    final_slab_mult: float = 1.0
    init_slab_mult: float = 1.5
    desorption_mult: float = 1.5
    skin: float = 0.3
    intercalation: bool = True

    def __post_init__(self) -> None:
        for name in ("final_slab_mult", "init_slab_mult", "desorption_mult"):
            value = getattr(self, name)
            if not (_is_real(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        if not (_is_real(self.skin) and self.skin >= 0):
            raise ValueError(f"skin must be a finite number >= 0 Å, got {self.skin!r}")
        if not isinstance(self.intercalation, bool):
            raise ValueError(f"intercalation must be True or False, got {self.intercalation!r}")

def bonds(atoms: Atoms, mult: float, skin: float) -> np.ndarray:
    """The connectivity of ``atoms``: (n_atoms, n_atoms) bool, symmetric, False on the diagonal.

    ``[i, j]`` is True when atoms i and j are within ``mult * (r_i + r_j) + 2 * skin`` Å of each other
    through some periodic image (ASE ``NeighborList`` on ``natural_cutoffs(atoms, mult=mult)`` with
    ``skin`` [Å], periodic as ``atoms.pbc``).
    """
    return neighbour_list(atoms, mult, skin).get_connectivity_matrix(sparse=False).astype(bool)


def neighbour_list(atoms: Atoms, mult: float, skin: float) -> NeighborList:
    """The ASE ``NeighborList`` behind :func:`bonds` (both ways, no self-interaction), updated for
    ``atoms``: for callers that need the periodic image offsets of each bond too."""
    neighbours = NeighborList(natural_cutoffs(atoms, mult=mult), skin=skin, self_interaction=False, bothways=True)
    neighbours.update(atoms)
    return neighbours


def detect_anomalies(initial: Atoms, final: Atoms, clean_slab: Atoms | None = None,
                     settings: AnomalySettings = AnomalySettings()) -> list[str]:
    """The anomalies of one relaxed adsorption configuration, in :data:`ANOMALIES` order.

    With m = ``settings.final_slab_mult`` and c = ``settings.init_slab_mult`` (bonds as in :func:`bonds`):

    - ``dissociated``: the adsorbate's own bonds (mult m) differ between ``initial`` and ``final``;
    - ``desorbed``: no adsorbate atom is bonded to a slab atom in ``final`` (mult ``desorption_mult``);
    - ``surface_changed``: a bond of the final slab part (mult m) is absent from ``clean_slab`` at mult c,
      or a bond of ``clean_slab`` (mult m) is absent from the final slab part at mult c;
    - ``intercalated`` (when ``settings.intercalation``): an adsorbate atom is bonded to a subsurface
      (tag 0) atom in ``final`` (mult m);
    - ``non_finite``: a NaN or infinite position in ``initial`` or ``final``, or energy, free energy or force
      in the results of ``final``'s calculator. Returned alone (``["non_finite"]``), the other tests skipped.

    Args:
        initial: the adslab before relaxation, n atoms [Å], tags 0/1/2 (2 = adsorbate).
        final: the same n atoms (same symbols, same order) after relaxation [Å]; its calculator's results,
            if any, are read (never computed).
        clean_slab: the relaxed clean slab: the slab (tag != 2) atoms of the adslab, same symbols and order,
            same periodic cell vectors; None uses the slab part of ``initial`` (fairchem's fallback).
        settings: multipliers, skin and whether to test intercalation.

    Returns:
        The kinds found; an empty list is a valid configuration.

    Raises:
        ValueError: ``initial`` and ``final`` differ in number or symbols of atoms; a tag other than 0, 1
            or 2; no adsorbate (tag 2) or no slab atom; a clean slab that does not match the slab part or
            has non-finite positions.
    """
    tags = initial.get_tags()
    adsorbate = tags == ADSORBATE_TAG
    slab = ~adsorbate
    _check_inputs(initial, final, tags)
    if clean_slab is None:
        clean_slab = initial[np.flatnonzero(slab)]
    else:
        _check_clean_slab(clean_slab, initial, slab)

    if not (_finite(initial) and _finite(final)):
        return ["non_finite"]

    m, c = settings.final_slab_mult, settings.init_slab_mult
    final_bonds = {mult: bonds(final, mult, settings.skin) for mult in {m, c, settings.desorption_mult}}
    found: set[str] = set()
    initial_adsorbate = bonds(initial[np.flatnonzero(adsorbate)], m, settings.skin)
    if not np.array_equal(initial_adsorbate, final_bonds[m][np.ix_(adsorbate, adsorbate)]):
        found.add("dissociated")
    if not final_bonds[settings.desorption_mult][np.ix_(adsorbate, slab)].any():
        found.add("desorbed")
    clean_bonds = {mult: bonds(clean_slab, mult, settings.skin) for mult in (m, c)}
    if _bonding_changed(clean_bonds, {mult: final_bonds[mult][np.ix_(slab, slab)] for mult in (m, c)}, m, c):
        found.add("surface_changed")
    if settings.intercalation and final_bonds[m][np.ix_(adsorbate, tags == SUBSURFACE_TAG)].any():
        found.add("intercalated")
    return [kind for kind in ANOMALIES if kind in found]


def surface_changed(reference: Atoms, slab: Atoms, settings: AnomalySettings = AnomalySettings()) -> bool:
    """Whether ``slab`` is bonded otherwise than ``reference`` (the same atoms, same order, [Å]):
    a bond of ``slab`` at mult m = ``settings.final_slab_mult`` absent from ``reference`` at mult
    c = ``settings.init_slab_mult``, or a bond of ``reference`` at mult m absent from ``slab`` at mult c
    (fairchem's ``DetectTrajAnomaly.has_surface_changed``; bonds as in :func:`bonds`)."""
    m, c = settings.final_slab_mult, settings.init_slab_mult
    return _bonding_changed({mult: bonds(reference, mult, settings.skin) for mult in (m, c)},
                            {mult: bonds(slab, mult, settings.skin) for mult in (m, c)}, m, c)


def _bonding_changed(reference: dict[float, np.ndarray], slab: dict[float, np.ndarray], m: float, c: float) -> bool:
    """:func:`surface_changed` from the bond matrices of both, keyed by multiplier."""
    return bool((slab[m] & ~reference[c]).any() or (reference[m] & ~slab[c]).any())


def _check_inputs(initial: Atoms, final: Atoms, tags: np.ndarray) -> None:
    if len(initial) != len(final):
        raise ValueError(f"initial and final configurations differ in size: {len(initial)} vs {len(final)} atoms")
    if initial.get_chemical_symbols() != final.get_chemical_symbols():
        raise ValueError("initial and final configurations differ in their chemical symbols (or their order)")
    unknown = sorted(set(tags.tolist()) - {SUBSURFACE_TAG, SURFACE_TAG, ADSORBATE_TAG})
    if unknown:
        raise ValueError(f"tags must be 0 (subsurface), 1 (surface) or 2 (adsorbate); found {unknown}")
    if not (tags == ADSORBATE_TAG).any():
        raise ValueError("no adsorbate atom: the configuration has no atom tagged 2")
    if (tags == ADSORBATE_TAG).all():
        raise ValueError("no slab atom: every atom of the configuration is tagged 2 (adsorbate)")


def _check_clean_slab(clean_slab: Atoms, initial: Atoms, slab: np.ndarray) -> None:
    expected = [symbol for symbol, is_slab in zip(initial.get_chemical_symbols(), slab) if is_slab]
    if clean_slab.get_chemical_symbols() != expected:
        raise ValueError(f"the clean slab ({len(clean_slab)} atoms, {clean_slab.get_chemical_formula()}) does not "
                         f"match the adslab's slab part ({len(expected)} atoms, "
                         f"{initial[np.flatnonzero(slab)].get_chemical_formula()}) atom by atom")
    periodic = np.asarray(initial.pbc) | np.asarray(clean_slab.pbc)
    if not np.allclose(clean_slab.cell[periodic], initial.cell[periodic], atol=CELL_TOLERANCE):
        raise ValueError("the clean slab's periodic cell vectors differ from the adslab's")
    if not np.isfinite(clean_slab.positions).all():
        raise ValueError("the clean slab has non-finite positions")


def _finite(atoms: Atoms) -> bool:
    """True when the positions and any stored energy, free energy and forces of ``atoms`` are finite."""
    if not np.isfinite(atoms.positions).all():
        return False
    results = getattr(atoms.calc, "results", None) or {}
    for key in ("energy", "free_energy", "forces"):
        value = results.get(key)
        if value is not None and not np.isfinite(np.asarray(value, dtype=float)).all():
            return False
    return True

