"""Recipes: the frames of one system, by kind (as OC20's S2EF "All+MD" mixes them).

- ``bulk``: strained and rattled 2x2x2 conventional cells (32 atoms), with stress (source ``bulk``);
- ``gas``: the molecule relaxed from a rattled start (source ``gas``; a single atom: one frame);
- ``slab``: the clean slab relaxed from a rattled start (source ``slab``);
- ``adslab``: one placement of the adsorbate, relaxed (source ``relax``), then rattled copies of the
  last relaxed frame (``rattle``) and a short Langevin MD from it (``md``).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from ase.calculators.calculator import BaseCalculator

from .adsorbates import gas_molecule, place_adsorbate
from .bulks import conventional_cell
from .frames import START_SIGMA, Frame, displaced, molecular_dynamics, rattle, relax, strained_bulks
from .plan import SystemSpec
from .slabs import make_slab


def make_frames(system: SystemSpec, calc: BaseCalculator, rng: np.random.Generator) -> tuple[list[Frame], Counter]:
    """The accepted frames of ``system`` labelled by ``calc``, and the count of rejected frames
    per reason (:data:`workflows.data.frames.REASONS`). Every random draw comes from ``rng``."""
    rejected: Counter = Counter()
    if system.kind == "bulk":
        return strained_bulks(conventional_cell(system.bulk).repeat(2), calc, rng, rejected), rejected
    if system.kind == "gas":
        return relax(displaced(gas_molecule(system.adsorbate), rng, START_SIGMA), calc, "gas", rejected)[0], rejected
    slab = make_slab(system.bulk, system.facet)
    if system.kind == "slab":
        return relax(displaced(slab, rng, START_SIGMA), calc, "slab", rejected)[0], rejected
    adslab = place_adsorbate(slab, system.adsorbate, rng)
    frames, relaxed = relax(adslab, calc, "relax", rejected)
    if relaxed is not None:
        frames += rattle(relaxed, calc, rng, rejected)
        frames += molecular_dynamics(relaxed, calc, rng, rejected)
    return frames, rejected
