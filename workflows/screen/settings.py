"""What a screen is asked to do: the system (a clean slab and an adsorbate) and the settings."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms
from ase.constraints import FixAtoms

from potentials.base import check_number

from .adsorbates import Adsorbate
from .anomaly import AnomalySettings

VERIFY_MODES: tuple[str, ...] = ("sp", "relax", "none")
ENERGY_KINDS: tuple[str, ...] = ("auto", "total", "adsorption")
GAS_REFERENCES: tuple[str, ...] = ("molecule", "elements", "oc20")


@dataclass(frozen=True)
class ScreenSystem:
    """One surface and one adsorbate: ``slab`` is the clean slab (tags 1 surface / 0 subsurface,
    fixed), ``name`` a readable label such as ``'Pd/111/CO'``."""

    name: str
    slab: Atoms
    adsorbate: Adsorbate

    @property
    def slug(self) -> str:
        """``name`` as a file name: ``'Pd-111-CO'``."""
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", self.name).strip("-")

    @property
    def fingerprint(self) -> str:
        """A digest of the geometry screened: the slab's elements, positions (to 1e-5 Å), cell, tags
        and fixed atoms, the adsorbate's elements and positions and its binding atoms. Two systems
        with one name but another geometry (a slab file edited in place, a strained bulk, another
        ``--binding``) have different fingerprints."""
        fixed = [c.index for c in self.slab.constraints if isinstance(c, FixAtoms)]
        parts = (self.slab.numbers, np.round(self.slab.positions, 5), np.round(self.slab.cell[:], 5),
                 self.slab.get_tags(), *fixed, self.adsorbate.atoms.numbers,
                 np.round(self.adsorbate.atoms.positions, 5), np.array(self.adsorbate.binding_indices))
        digest = hashlib.sha256()
        for part in parts:
            digest.update(np.ascontiguousarray(part, dtype=float).tobytes() + b"|")
        return digest.hexdigest()[:16]


@dataclass(frozen=True)
class ScreenSettings:
    """How each system is screened; the defaults are AdsorbML's (Lan et al., npj Comput. Mater. 9,
    172 (2023)) where it has one.

    Attributes:
        heuristic: place the adsorbate on every symmetry-unique on-top, bridge and hollow site.
        num_random: also place it on this many random surface sites (AdsorbML: 100).
        seed: the random stream of the placements.
        fmax: ML relaxation threshold on the largest force over free atoms [eV/Å] (AdsorbML: 0.02).
        max_steps: ML relaxation step limit (AdsorbML: 300).
        optimizer: ``'LBFGS'`` or ``'FIRE'`` (ASE's algorithms; the batched engine follows them exactly).
        optimizer_kwargs: ASE's keyword arguments of the optimizer (``maxstep`` [Å], ``memory``, ...).
        device, dtype: where and in which precision our models run.
        max_atoms: the batched engine's batch budget [atoms] (None: estimated).
        top_k: how many of the lowest-energy valid configurations the reference checks (AdsorbML: 5).
        verify: ``'sp'`` (reference single points, as the paper's ML+SP), ``'relax'`` (reference
            relaxations, ML+RX) or ``'none'``.
        verify_fmax, verify_steps: the reference relaxations' threshold [eV/Å] and step limit (the
            clean slab's, ``'relax'`` verification's and the ground truth's).
        energy: ``'total'`` (the model predicts total energies: referenced to the relaxed clean slab
            and the gas references), ``'adsorption'`` (it predicts adsorption energies, as the OC20
            checkpoints do: used as they are) or ``'auto'`` (adsorption for fairchem checkpoints).
        gas_references: ``'elements'`` (OC20's scheme: ε_Z from H₂, H₂O, CO, N₂ relaxed with the
            calculator), ``'molecule'`` (the adsorbate's own gas molecule relaxed alone: an isolated
            atom for *H, *O, ...), ``'oc20'`` (OC20's RPBE values: for DFT-RPBE-scale energies only)
            or a mapping element -> eV used for both calculators.
        gas_source: which calculator computes the ML energies' gas reference: ``'reference'`` (as
            fairchem 2.x references ML total energies with DFT gas energies; right for a model trained
            on the reference's energies) or ``'model'``. Without a reference, the model.
        anomaly: the anomaly detector's settings.
    """

    heuristic: bool = True
    num_random: int = 20
    seed: int = 0
    fmax: float = 0.02
    max_steps: int = 300
    optimizer: str = "LBFGS"
    optimizer_kwargs: Mapping[str, float] = field(default_factory=dict)
    device: str = "auto"
    dtype: str = "float32"
    max_atoms: int | None = None
    top_k: int = 5
    verify: str = "sp"
    verify_fmax: float = 0.03
    verify_steps: int = 300
    energy: str = "auto"
    gas_references: str | Mapping[str, float] = "elements"
    gas_source: str = "reference"
    anomaly: AnomalySettings = field(default_factory=AnomalySettings)

    def __post_init__(self) -> None:
        check_number(self.num_random, "num_random", int, minimum=0)
        if not self.heuristic and self.num_random == 0:
            raise ValueError("no placements: heuristic is off and num_random is 0")
        check_number(self.fmax, "fmax", float, minimum=0, inclusive=False, unit="eV/Å")
        check_number(self.verify_fmax, "verify_fmax", float, minimum=0, inclusive=False, unit="eV/Å")
        check_number(self.max_steps, "max_steps", int, minimum=1)
        check_number(self.verify_steps, "verify_steps", int, minimum=1)
        check_number(self.top_k, "top_k", int, minimum=1)
        if self.optimizer not in ("LBFGS", "FIRE"):
            raise ValueError(f"optimizer must be LBFGS or FIRE, got {self.optimizer!r}")
        if self.verify not in VERIFY_MODES:
            raise ValueError(f"verify must be one of {', '.join(VERIFY_MODES)}, got {self.verify!r}")
        if self.energy not in ENERGY_KINDS:
            raise ValueError(f"energy must be one of {', '.join(ENERGY_KINDS)}, got {self.energy!r}")
        if self.gas_source not in ("reference", "model"):
            raise ValueError(f"gas_source must be 'reference' or 'model', got {self.gas_source!r}")
        if isinstance(self.gas_references, str) and self.gas_references not in GAS_REFERENCES:
            raise ValueError("gas_references must be 'molecule', 'elements', 'oc20' or a mapping element -> eV, "
                             f"got {self.gas_references!r}")
