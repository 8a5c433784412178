"""The ASE calculator."""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from potentials import Potential

from .batch import SystemBatch
from .evaluate import has_stress, predict
from .models import prepare_model, resolve_device, resolve_dtype, resolve_model


class EquiCalculator(Calculator):
    """ASE calculator for any :class:`potentials.Potential`.

    One forward and one backward pass fill every property: ``energy`` and ``free_energy`` [eV],
    per-atom ``energies`` [eV], ``forces`` = -dE/dr [eV/Å] and, for periodic systems with a 3-D
    cell, ``stress`` = (1/V) dE/de in Voigt order (xx, yy, zz, yz, xz, xy) [eV/Å³], ASE's sign.
    Results are cached the ASE way: MD integrators, optimizers and loggers cost one model call per
    step. ``parameters["forces"]`` says where forces come from: ``"conservative"`` (-dE/dr) or
    ``"direct"`` (a force head, as in reference-compatible EquiformerV2; a warning says so). A
    direct-force model needs no backward pass for its forces: it runs the forward pass alone until a
    caller first asks for stress, and from then on fills stress with every call.

    Args:
        model: a :class:`potentials.Potential`, a checkpoint path, or a registered model name
            (``potentials.available_models()``). A model the caller passes is never changed: when
            it is not already on ``device``, in ``dtype`` and in eval mode, the calculator uses a copy.
        device: ``'cpu'``, ``'cuda'``, ``'cuda:N'`` or ``'auto'`` (CUDA when available).
        dtype: the network's precision: ``'float64'`` (default; relaxations, phonons, tight energy
            conservation) or ``'float32'`` (faster). Geometry is float64 either way: neighbour
            search, edge vectors (rounded once to ``dtype``), forces, stress and the energy sum.

    Example:
        >>> from ase.build import bulk
        >>> atoms = bulk("Ar", "fcc", a=5.26, cubic=True)
        >>> atoms.calc = EquiCalculator("lj-argon", device="cpu")
        >>> round(atoms.get_potential_energy() / len(atoms), 4)
        -0.0783
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(
        self,
        model: Potential | str | os.PathLike,
        *,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "float64",
        **kwargs: Any,
    ) -> None:
        resolved, label = resolve_model(model)
        self._stress_asked = False  # has a caller asked for stress yet (see calculate)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        self.model = prepare_model(resolved, self.device, self.dtype, owned=resolved is not model)
        forces = "direct" if self.model.direct_forces else "conservative"
        if forces == "direct":
            warnings.warn(
                f"model {label!r} predicts forces with a direct head: they are not -dE/dr, so NVE MD will "
                "not conserve energy", stacklevel=2,
            )
        super().__init__(
            model=label, device=str(self.device), dtype=str(self.dtype).removeprefix("torch."), forces=forces,
            **kwargs,
        )

    def calculate(
        self, atoms: Atoms | None = None, properties: list[str] | None = None, system_changes: list[str] = all_changes
    ) -> None:
        properties = properties or ["energy"]
        super().calculate(atoms, properties, system_changes)
        systems = SystemBatch.from_atoms(self.atoms, dtype=torch.float64, device=self.device)
        defined = bool(has_stress(systems.cell, systems.pbc).all())
        # stress comes with the forces' backward pass for free; a direct-force model has no backward
        # pass without it, so it computes stress only once a caller has asked for it (from then on
        # with every call: cell filters and barostats ask for forces, then stress, every step)
        self._stress_asked = self._stress_asked or "stress" in properties
        stress = defined and (self._stress_asked or not self.model.direct_forces)
        derivatives = stress or not self.model.direct_forces
        with torch.inference_mode(not derivatives):  # nothing to differentiate: no autograd bookkeeping
            out = predict(self.model, systems, forces=True, stress=stress)
        energy = float(out.energy[0].detach())
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": _numpy(out.energies),
            "forces": _numpy(out.forces),
        }
        if stress:
            self.results["stress"] = full_3x3_to_voigt_6_stress(_numpy(out.stress[0]))
        # only now, once predict has refused bad input (bad geometry, unknown elements, coincident
        # atoms: ValueError whatever is asked), is a missing stress a property this system lacks
        if "stress" in properties and not defined:
            raise PropertyNotImplementedError("stress needs a periodic system with a 3-D cell of non-zero volume")


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(device="cpu", dtype=torch.float64).numpy()
