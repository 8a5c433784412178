"""The ML model of a screen: one of ours (relaxed in batches) or any ASE calculator (one at a time).

A model is named by a string, so that Dask workers can load it themselves, once per process:
a shipped name (``eqv2-emt-oc``), a checkpoint path (ours or an official fairchem 1.x EquiformerV2
OC20 checkpoint), or a calculator recipe of :mod:`workflows.data.labellers` (``emt``, ``sevenn``,
``module:Name``).

What the model's energy is, a total energy or an adsorption energy, is known for the shipped named
models and the ``emt`` and ``sevenn`` calculators (total); :func:`energy_kind` refuses an
``--energy`` that contradicts it. A fairchem checkpoint is taken for an OC20 one (adsorption
energies) unless ``--energy total`` says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from ase.calculators.calculator import BaseCalculator
from ase.data import chemical_symbols

from equicalc import EquiCalculator
from equicalc.models import prepare_model, resolve_device, resolve_dtype
from potentials import CheckpointError, Potential, available_models, load_potential
from workflows.data.labellers import Labeller, resolve_labeller

_LOADED: dict[tuple[str, str, str], ScreenModel] = {}


@dataclass
class ScreenModel:
    """A loaded ML model: ``potential`` (ours, for the batched engine) or ``labeller`` (an ASE calculator)."""

    label: str
    potential: Potential | None = None
    labeller: Labeller | None = None

    @property
    def elements(self) -> frozenset[str] | None:
        """The elements the model covers (None: not known, the user vouches for it)."""
        if self.potential is not None:
            return frozenset(chemical_symbols[z] for z in self.potential.config.elements)
        return self.labeller.elements

    @property
    def known_energy(self) -> str | None:
        """What the model's energy is known to be: ``'total'`` for a shipped named model (trained on
        a calculator's energies) and the ``emt`` and ``sevenn`` calculators; None where the model does
        not say (a checkpoint file, of ours or fairchem's: an OC20 checkpoint predicts adsorption
        energies, an OC22 one total energies; a ``module:Name`` calculator)."""
        if self.potential is not None:
            return "total" if self.label in available_models() else None
        return "total" if self.labeller.name in ("emt", "sevenn") else None

    @property
    def default_energy(self) -> str:
        """What ``--energy auto`` takes the model's energies for: what is known, else ``'adsorption'``
        for a fairchem checkpoint (OC20's, from its metadata) and ``'total'`` for anything else."""
        if self.known_energy is not None:
            return self.known_energy
        fairchem = self.potential is not None and self.potential.metadata.get("format") == "fairchem-1.x"
        return "adsorption" if fairchem else "total"

    def calculator(self) -> BaseCalculator:
        """An ASE calculator of the model (a new one for a labeller)."""
        if self.potential is not None:
            return EquiCalculator(self.potential, device=self.potential.device, dtype=self.potential.dtype)
        return self.labeller.calculator()


def energy_kind(model: ScreenModel, requested: str) -> str:
    """What the screen takes the model's energies for: ``requested`` (``'total'`` or ``'adsorption'``,
    the user's ``--energy``) or, for ``'auto'``, :attr:`ScreenModel.default_energy`.

    Raises:
        ValueError: ``requested`` contradicts what the model is known to predict
            (:attr:`ScreenModel.known_energy`).
    """
    known = model.known_energy
    if requested == "auto":
        return model.default_energy
    if known is not None and known != requested:
        raise ValueError(f"--energy {requested}: model {model.label!r} predicts {known} energies "
                         f"(use --energy auto or {known})")
    return requested


def load_screen_model(spec: str, device: str = "auto", dtype: str = "float32") -> ScreenModel:
    """The model named ``spec``, loaded once per process (later calls return the same object).

    Raises:
        ValueError: ``spec`` is neither a model of ours nor a calculator recipe (both reasons named).
    """
    key = (str(spec), str(device), str(dtype))
    if key not in _LOADED:
        _LOADED[key] = _load(str(spec), device, dtype)
    return _LOADED[key]


def _load(spec: str, device: str, dtype: str) -> ScreenModel:
    try:
        potential = load_potential(spec)
    except (ValueError, CheckpointError, OSError) as ours:
        try:
            return ScreenModel(spec, labeller=resolve_labeller(spec))
        except ValueError as theirs:
            raise ValueError(f"model {spec!r}: not a model of ours ({ours}) nor an ASE calculator "
                             f"({theirs})") from None
    potential = prepare_model(potential, resolve_device(device), resolve_dtype(dtype), owned=True)
    return ScreenModel(spec, potential=potential)
