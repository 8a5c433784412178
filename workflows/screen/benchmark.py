"""The screening benchmarks: out-of-distribution systems and their cached ground truth.

Both benchmarks hold systems of the shipped potentials' ``test_ood`` split (:mod:`workflows.data.plan`)
on the same slabs the data set builds (:func:`workflows.data.slabs.make_slab`):

- ``ood`` (48 systems): every adsorbate-bulk pair held out of training on the 111 and 100 facets, and
  30 chosen adsorbates on the held-out 211 facet;
- ``confirm`` (48 systems by default, up to 157): other adsorbate-bulk pairs on the 211 facet, in
  an order drawn at random from the data catalogue, so that a result found on ``ood`` can be
  confirmed on systems nobody chose.

Files: ``<out>/ground_truth/<slug>.db`` (the reference's relaxation of every placement, reused by
every model) and ``<out>/<model>/<slug>.db`` (each model's screen).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from workflows.data.adsorbates import ADSORBATES, adsorbate_elements
from workflows.data.bulks import BULKS, bulk_elements
from workflows.data.labellers import Labeller, emt_elements
from workflows.data.plan import OOD_FACET, OOD_PAIRS
from workflows.data.slabs import make_slab

from .adsorbates import library_adsorbate
from .cluster import SystemOutcome, ground_truth_systems
from .settings import ScreenSettings, ScreenSystem
from .store import ScreenStore

#: adsorbates on the held-out 211 facet, by bulk.
_ON_211: tuple[tuple[str, str], ...] = (
    ("Cu", "O"), ("Pt", "CO"), ("Pd", "H"), ("Ni", "OH"), ("Ag", "O"), ("Au", "CO"), ("Al", "O"), ("Pt", "CH3"),
    ("Cu", "NH2"), ("Pd", "OH"), ("Cu3Au", "H"), ("Pt3Ni", "CO"), ("Ni3Al", "O"), ("Cu3Pt", "CO"),
    ("Pt", "O"), ("Pd", "O"), ("Ni", "O"), ("Au", "O"), ("Cu3Au", "O"), ("Cu3Pt", "O"), ("Pt", "H"), ("Cu", "H"),
    ("Ni", "H"), ("Ag", "H"), ("Au", "H"), ("Pt3Ni", "H"), ("Pd", "CO"), ("Ni", "CO"), ("Cu", "CO"), ("Ag", "CO"),
)


#: the seed of the ``confirm`` benchmark's draw (fixed before any model was screened on it)
CONFIRM_SEED = 2026


def ood_systems(count: int | None = None) -> list[tuple[str, str, str]]:
    """The first ``count`` (default: all 48) of the ``ood`` benchmark's systems as (bulk, facet,
    adsorbate): 30 adsorbate-metal pairs on the held-out 211 facet, then the 9 held-out pairs on 111
    and 100.

    Raises:
        ValueError: ``count`` < 1 or over 48.
    """
    systems = [(bulk, OOD_FACET, adsorbate) for bulk, adsorbate in _ON_211] + [
        (bulk, facet, adsorbate) for bulk, adsorbate in sorted(OOD_PAIRS) for facet in ("111", "100")]
    return systems[:_checked_count("ood", count, len(systems))]


def confirmation_systems(count: int = 48, seed: int = CONFIRM_SEED) -> list[tuple[str, str, str]]:
    """The ``confirm`` benchmark's systems as (bulk, facet, adsorbate): the first ``count`` of the
    adsorbate-bulk pairs on the held-out 211 facet, in a random order (``numpy`` generator seeded
    by ``seed``), from the data catalogue's bulks and adsorbates that EMT covers, leaving out the
    ``ood`` benchmark's pairs. A larger ``count`` extends a smaller one's list.

    Raises:
        ValueError: ``count`` < 1 or more than the pairs there are (157).
    """
    ood = set(_ON_211)
    pairs = [(bulk, adsorbate) for bulk in BULKS for adsorbate in ADSORBATES
             if bulk_elements(bulk) | adsorbate_elements(adsorbate) <= emt_elements() and (bulk, adsorbate) not in ood]
    drawn = np.random.default_rng(seed).permutation(len(pairs))[:_checked_count("confirm", count, len(pairs))]
    return [(pairs[k][0], OOD_FACET, pairs[k][1]) for k in drawn]


def _checked_count(name: str, count: int | None, available: int) -> int:
    """``count``, or ``available`` for None; ``ValueError`` outside 1..``available``."""
    if count is None:
        return available
    if not 1 <= count <= available:
        raise ValueError(f"the {name} benchmark has 1 to {available} systems, {count} asked for")
    return count


#: the benchmarks by name: the first ``count`` systems as (bulk, facet, adsorbate)
BENCHMARKS: dict[str, Callable[..., list[tuple[str, str, str]]]] = {"ood": ood_systems, "confirm": confirmation_systems}


def benchmark_systems(name: str, count: int | None = None) -> list[ScreenSystem]:
    """The first ``count`` systems of the benchmark ``name`` (a key of :data:`BENCHMARKS`; default:
    its 48), with their slabs cut and adsorbates built.

    Raises:
        ValueError: an unknown benchmark, or a ``count`` it cannot give.
    """
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; there are: {', '.join(BENCHMARKS)}")
    systems = BENCHMARKS[name]() if count is None else BENCHMARKS[name](count)
    return [ScreenSystem(f"{bulk}/{facet}/{adsorbate}", make_slab(bulk, facet), library_adsorbate(adsorbate))
            for bulk, facet, adsorbate in systems]


def build_ground_truth(systems: list[ScreenSystem], reference: Labeller, out: str | os.PathLike,
                       settings: ScreenSettings, *, workers: int = 2, scheduler: str | None = None,
                       progress: bool = True) -> dict[str, str]:
    """Relax every placement of every system with ``reference`` into ``<out>/ground_truth/``, one
    Dask task per system (``workers``, ``scheduler``: as :func:`.cluster.screen_systems`), resuming
    what is there (a finished system costs nothing). A system that fails is printed as it does.

    Returns:
        The systems whose ground truth could not be made, by name, with why (one line each); the
        others are done.

    Raises:
        ValueError: no system's ground truth could be made (the first reason given).
    """
    failed = {}
    with tqdm(total=len(systems), desc="ground truth (systems)", disable=not progress, unit="system") as bar:
        def done(outcome: SystemOutcome) -> None:
            bar.update()
            if outcome.error:
                failed[outcome.system.name] = outcome.error.removeprefix(f"{outcome.system.name}: ")
                bar.write(f"no ground truth for {outcome.error}")

        ground_truth_systems(systems, reference, [truth_store(out, s).path for s in systems], settings,
                             workers=workers, scheduler=scheduler, on_outcome=done)
    if systems and len(failed) == len(systems):
        raise ValueError(f"no system has a ground truth: {next(iter(failed.items()))[1]}")
    return failed


def truth_store(out: str | os.PathLike, system: ScreenSystem) -> ScreenStore:
    """The ground-truth store of ``system`` in the benchmark folder ``out``."""
    return ScreenStore(Path(out) / "ground_truth" / f"{system.slug}.db")


def model_folder(model: str) -> str:
    """A folder name for the model ``model`` (a name or a path)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(model).stem if os.sep in model else model)
