"""The screening benchmark: out-of-distribution systems, their cached ground truth, and the evaluation.

The systems are those of the shipped potentials' ``test_ood`` split (:mod:`workflows.data.plan`):
every adsorbate-bulk pair held out of training on the 111 and 100 facets, and adsorbates on the
held-out 211 facet, on the same slabs the data set builds (:func:`workflows.data.slabs.make_slab`).
Files: ``<out>/ground_truth/<slug>.db`` (the reference's relaxation of every placement, reused by
every model) and ``<out>/<model>/<slug>.db`` (each model's screen).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tqdm import tqdm

from workflows.data.labellers import Labeller
from workflows.data.plan import OOD_FACET, OOD_PAIRS
from workflows.data.slabs import make_slab

from .adsorbates import library_adsorbate
from .pipeline import ground_truth
from .settings import ScreenSettings, ScreenSystem
from .store import ScreenStore

#: adsorbates on the held-out 211 facet, by bulk.
_ON_211: tuple[tuple[str, str], ...] = (
    ("Cu", "O"), ("Pt", "CO"), ("Pd", "H"), ("Ni", "OH"), ("Ag", "O"), ("Au", "CO"), ("Al", "O"), ("Pt", "CH3"),
    ("Cu", "NH2"), ("Pd", "OH"), ("Cu3Au", "H"), ("Pt3Ni", "CO"), ("Ni3Al", "O"), ("Cu3Pt", "CO"),
    ("Pt", "O"), ("Pd", "O"), ("Ni", "O"), ("Au", "O"), ("Cu3Au", "O"), ("Cu3Pt", "O"), ("Pt", "H"), ("Cu", "H"),
    ("Ni", "H"), ("Ag", "H"), ("Au", "H"), ("Pt3Ni", "H"), ("Pd", "CO"), ("Ni", "CO"), ("Cu", "CO"), ("Ag", "CO"),
)


def ood_systems() -> list[ScreenSystem]:
    """The benchmark's systems (48): 30 adsorbate-metal pairs on the held-out 211 facet, then the 9
    held-out pairs on 111 and 100."""
    pairs = [(bulk, OOD_FACET, adsorbate) for bulk, adsorbate in _ON_211]
    pairs += [(bulk, facet, adsorbate) for bulk, adsorbate in sorted(OOD_PAIRS) for facet in ("111", "100")]
    return [ScreenSystem(f"{bulk}/{facet}/{adsorbate}", make_slab(bulk, facet), library_adsorbate(adsorbate))
            for bulk, facet, adsorbate in pairs]


def build_ground_truth(systems: list[ScreenSystem], reference: Labeller, out: str | os.PathLike,
                       settings: ScreenSettings, progress: bool = True) -> dict[str, str]:
    """Relax every placement of every system with ``reference`` into ``<out>/ground_truth/``,
    resuming what is there (a finished system costs nothing).

    Returns:
        The systems whose ground truth could not be made, by name, with why (one line each); the
        others are done.
    """
    failed = {}
    with tqdm(desc="ground truth (configurations)", disable=not progress, unit="config") as bar:
        for system in systems:
            try:
                ground_truth(system, reference, truth_store(out, system), settings, progress=bar.update)
            except ValueError as err:
                failed[system.name] = str(err)
    return failed


def truth_store(out: str | os.PathLike, system: ScreenSystem) -> ScreenStore:
    """The ground-truth store of ``system`` in the benchmark folder ``out``."""
    return ScreenStore(Path(out) / "ground_truth" / f"{system.slug}.db")


def model_folder(model: str) -> str:
    """A folder name for the model ``model`` (a name or a path)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(model).stem if os.sep in model else model)
