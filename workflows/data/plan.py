"""The plan of a data set: which systems it holds, in which order, and the split of each.

A *system* is one thing whose frames are made together from one random stream: a bulk, a gas-phase
molecule, a clean slab, or one placement of an adsorbate on a slab (its relaxation, rattled copies
and MD). Splits are drawn by system, never by frame, so no relaxation has frames on both sides.

Split rule:

- ``test_ood``: every system on the :data:`OOD_FACET` facet (clean slabs included), and every
  adsorbate-bulk pair in :data:`OOD_PAIRS` on any facet: a facet and pairs never seen in training;
- bulks and gas-phase molecules: ``train`` (the references a potential needs);
- every other slab system: ``val`` or ``test_id`` for 10 % each (at least one each when there are
  three or more), drawn by a permutation seeded by ``seed``, the rest ``train``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .adsorbates import ADSORBATES, adsorbate_elements
from .bulks import BULKS, bulk_elements
from .slabs import FACETS

SPLITS: tuple[str, ...] = ("train", "val", "test_id", "test_ood")
OOD_FACET = "211"
OOD_PAIRS: frozenset[tuple[str, str]] = frozenset({
    ("Cu", "CO"), ("Pt", "OH"), ("Au", "O"), ("Ni", "NH2"), ("Pd", "CH3"), ("Ag", "OCH3"),
    ("Al", "H"), ("Pt3Ni", "O"), ("Cu3Au", "CHO"),
})
VAL_FRACTION = TEST_ID_FRACTION = 0.1
# independent random streams drawn from one seed: one per system, the split, the subset of a numeric size
_SYSTEM_STREAM, _SPLIT_STREAM, _SUBSET_STREAM = 0, 1, 2


@dataclass(frozen=True)
class Catalogue:
    """What a size holds: bulks, facets, adsorbates and placements per adsorbate and slab."""

    bulks: tuple[str, ...]
    facets: tuple[str, ...]
    adsorbates: tuple[str, ...]
    placements: int


SIZES: dict[str, Catalogue] = {
    "tiny": Catalogue(("Cu", "Pt"), ("111", "211"), ("H", "O", "CO"), 1),
    "small": Catalogue(("Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt", "Cu3Au", "Pt3Ni"), FACETS,
                       ("H", "O", "C", "OH", "CO", "CH3", "NH2"), 1),
    "default": Catalogue(BULKS, FACETS, tuple(ADSORBATES), 2),
}


@dataclass(frozen=True)
class SystemSpec:
    """One system: ``kind`` is ``'bulk'``, ``'gas'``, ``'slab'`` (clean) or ``'adslab'``; ``bulk``,
    ``facet`` (``'bulk'``/``'gas'`` for those kinds) and ``adsorbate`` (``'clean'`` for a clean slab,
    ``'none'`` for a bulk) name what it is, ``placement`` numbers the placements of one adsorbate
    on one slab."""

    kind: str
    bulk: str
    facet: str
    adsorbate: str
    placement: int = 0
    split: str = field(default="train", compare=False)

    @property
    def system_id(self) -> str:
        """A readable unique name, e.g. ``'Cu/111/CO/0'``, ``'Cu/111/clean'``, ``'Cu/bulk'``, ``'gas/CO'``."""
        if self.kind == "adslab":
            return f"{self.bulk}/{self.facet}/{self.adsorbate}/{self.placement}"
        if self.kind == "slab":
            return f"{self.bulk}/{self.facet}/clean"
        return f"{self.bulk}/bulk" if self.kind == "bulk" else f"gas/{self.adsorbate}"


def plan_systems(size: str | int, seed: int, elements: frozenset[str]) -> list[SystemSpec]:
    """The systems of a data set of ``size`` (a key of :data:`SIZES`, or a number of systems drawn
    at random from the default catalogue) made of ``elements``, with their splits.

    ``ValueError`` for an unknown size, a number below 1, or elements that leave no bulk.
    """
    if isinstance(size, bool) or not isinstance(size, (str, int)):
        raise ValueError(f"size must be one of {', '.join(SIZES)} or a number of systems, got {size!r}")
    if isinstance(size, int) and size < 1:
        raise ValueError(f"size must be at least 1 system, got {size}")
    if isinstance(size, str) and size not in SIZES:
        raise ValueError(f"unknown size {size!r}: use one of {', '.join(SIZES)} or a number of systems")
    catalogue = SIZES[size] if isinstance(size, str) else SIZES["default"]
    systems = _catalogue_systems(catalogue, elements)
    if isinstance(size, int) and size < len(systems):
        chosen = np.random.default_rng([seed, _SUBSET_STREAM]).choice(len(systems), size, replace=False)
        systems = [systems[k] for k in sorted(chosen)]
    return _assign_splits(systems, seed)


def _catalogue_systems(catalogue: Catalogue, elements: frozenset[str]) -> list[SystemSpec]:
    """The catalogue's systems made only of ``elements``, in order: bulks, gas-phase molecules,
    clean slabs, adsorbate placements."""
    bulks = [b for b in catalogue.bulks if bulk_elements(b) <= elements]
    adsorbates = [a for a in catalogue.adsorbates if adsorbate_elements(a) <= elements]
    if not bulks:
        raise ValueError(f"no bulk of this size is made of the elements {', '.join(sorted(elements))} "
                         f"(bulks: {', '.join(catalogue.bulks)})")
    return [
        *(SystemSpec("bulk", b, "bulk", "none") for b in bulks),
        *(SystemSpec("gas", "none", "gas", a) for a in adsorbates),
        *(SystemSpec("slab", b, f, "clean") for b in bulks for f in catalogue.facets),
        *(SystemSpec("adslab", b, f, a, p) for b in bulks for f in catalogue.facets for a in adsorbates
          for p in range(catalogue.placements)),
    ]


def _assign_splits(systems: list[SystemSpec], seed: int) -> list[SystemSpec]:
    """``systems`` with their splits by the rule of this module's docstring."""
    def out_of_distribution(s: SystemSpec) -> bool:
        return s.facet == OOD_FACET or (s.bulk, s.adsorbate) in OOD_PAIRS

    splits = ["test_ood" if out_of_distribution(s) else "train" for s in systems]
    candidates = [k for k, s in enumerate(systems) if s.kind in ("slab", "adslab") and splits[k] == "train"]
    n = len(candidates)
    n_val = max(round(VAL_FRACTION * n), 1) if n >= 3 else 0
    n_test = max(round(TEST_ID_FRACTION * n), 1) if n >= 3 else 0
    order = np.random.default_rng([seed, _SPLIT_STREAM]).permutation(n)
    for rank, k in enumerate(order):
        if rank < n_val:
            splits[candidates[k]] = "val"
        elif rank < n_val + n_test:
            splits[candidates[k]] = "test_id"
    return [replace(s, split=split) for s, split in zip(systems, splits)]


def system_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of the system at ``index`` of a plan: a function of (seed, index) only, so
    that a resumed run draws what an uninterrupted one would."""
    return np.random.default_rng([seed, _SYSTEM_STREAM, index])


def all_elements() -> frozenset[str]:
    """Every element some bulk or adsorbate of the catalogue is made of."""
    return frozenset().union(*map(bulk_elements, BULKS), *map(adsorbate_elements, ADSORBATES))
