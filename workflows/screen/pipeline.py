"""Screening one system, AdsorbML's way (Lan et al., npj Comput. Mater. 9, 172 (2023)), resumable.

1. place the adsorbate on the slab (heuristic and random sites, :mod:`.placement`);
2. relax the clean slab and every placement with the ML model: ours in one batch through the
   batched engine (:func:`workflows.relax.relax_batch`), an ASE calculator one at a time;
3. flag anomalies (dissociated, desorbed, surface changed, intercalated, non-finite) and leave
   them out of the ranking;
4. check the ``top_k`` lowest-energy valid configurations with the reference calculator (single
   points or relaxations); a reference failure is recorded and the others go on.

Every finished piece of work is written to the system's :class:`.store.ScreenStore` at once and
skipped when the screen runs again, so an interrupted screen resumes where it stopped.
:func:`ground_truth` relaxes every placement with the reference instead (the benchmark's truth).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator
from ase.calculators.singlepoint import SinglePointCalculator

from workflows.data.labellers import Labeller, check_elements
from workflows.relax import relax_batch
from workflows.relax.result import RelaxResult
from workflows.relax.single import relax

from .anomaly import FAILED, detect_anomalies, surface_changed
from .models import ScreenModel, energy_kind as energy_kind_of
from .placement import make_placements
from .references import OC20_REFERENCES, adsorbate_reference, check_references, gas_energy, molecule_references
from .result import SystemResult, system_result
from .settings import ScreenSettings, ScreenSystem
from .store import ScreenStore

STAGES: tuple[str, ...] = ("placement", "relaxation", "anomaly", "verification")
#: how the relaxations (the engine's and ASE's, :mod:`workflows.relax`) begin the error of a non-finite
#: energy or force, and how this module begins a calculator's exception
NON_FINITE, RAISED = "non-finite", "the calculator raised"


class Timer:
    """Wall time [s] spent in each stage of :data:`STAGES`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Add the wall time of the ``with`` block to stage ``name``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start


def screen_system(system: ScreenSystem, model: ScreenModel, reference: Labeller | None, store: ScreenStore,
                  settings: ScreenSettings = ScreenSettings(), timer: Timer | None = None) -> SystemResult:
    """Screen ``system`` with ``model``, verify with ``reference`` (None: no verification), resuming ``store``.

    Returns:
        The system's :class:`.result.SystemResult`, read back from ``store`` (so an interrupted and
        resumed screen reports exactly what an uninterrupted one does); ``timings`` holds the wall
        time of each stage of this call.

    Raises:
        ValueError: an element the model or the reference lacks; an adsorbate element without a gas
            reference; a placement that cannot be made; the model or the reference fails on the clean
            slab or a gas molecule; ``store`` was made with other settings or is being written by
            another process. A configuration that fails (a non-finite energy, a calculator's
            exception, a reference error) is recorded and never stops the others.
    """
    timer = timer or Timer()
    energy_kind = energy_kind_of(model, settings.energy)
    reference = reference.in_directory(_calculation_folder(store)) if settings.verify != "none" and reference else None
    check_system(system, model, reference)
    _check_gas_elements(system, settings)
    with store.lock():
        store.claim(_screen_meta(system, model, reference, settings, energy_kind))
        with timer.stage("placement"):
            placements = _placements(system, store, settings)
        if energy_kind == "total":
            gas = reference.calculator if settings.gas_source == "reference" and reference is not None \
                else model.calculator
            _gas_references(system, store, "ml", gas, settings)
            with timer.stage("relaxation"):
                clean_slab = _ml_slab(system, model, store, settings)
        else:  # an adsorption-energy model: the reference's relaxed slab, as fairchem 2.x takes the DFT one
            clean_slab = _reference_slab(system, reference.calculator(), store, settings) if reference else None
        todo = [(cid, atoms) for cid, atoms in placements.items() if cid not in store.config_ids("ml")]
        _relax_placements(todo, model, settings, store, clean_slab, timer)
        if reference is not None:
            with timer.stage("verification"):
                _verify(system, reference, store, settings, energy_kind)
        result = system_result(system.name, store, settings, energy_kind)
    result.timings = dict(timer.seconds)
    return result


def ground_truth(system: ScreenSystem, reference: Labeller, store: ScreenStore,
                 settings: ScreenSettings = ScreenSettings()) -> None:
    """Relax every placement of ``system`` with ``reference`` (LBFGS to ``verify_fmax``, at most
    ``verify_steps``), with anomaly detection against the reference's relaxed clean slab, into
    ``store`` (rows ``ground_truth``), resuming what is there.

    Raises:
        ValueError: as :func:`screen_system`, for the reference.
    """
    check_system(system, None, reference)
    _check_gas_elements(system, settings)
    reference = reference.in_directory(_calculation_folder(store))
    with store.lock():
        store.claim({**_placement_meta(system, settings), "reference": reference.key,
                     "verify_fmax": settings.verify_fmax, "verify_steps": settings.verify_steps,
                     "gas": _gas_meta(settings), "anomaly": asdict(settings.anomaly)})
        placements = _placements(system, store, settings)
        calculator = reference.calculator()
        slab = _reference_slab(system, calculator, store, settings)
        _gas_references(system, store, "reference", reference.calculator, settings)
        done = store.config_ids("ground_truth")
        for cid, atoms in placements.items():
            if cid in done:
                continue
            result = _relax_with(atoms, calculator, settings.verify_fmax, settings.verify_steps, "LBFGS", {})
            store.add("ground_truth", result.atoms, **_relax_keys(cid, result, _anomalies(atoms, result, slab, settings)),
                      ionic_steps=result.steps + 1)


def _calculation_folder(store: ScreenStore) -> str:
    """Where the reference of the system in ``store`` writes its files (file-based calculators):
    ``<store>.calc/`` beside the store, one per system, so systems screened at once never share one."""
    return f"{store.path}.calc"


def _placement_meta(system: ScreenSystem, settings: ScreenSettings) -> dict:
    return {"system": system.name, "geometry": system.fingerprint, "heuristic": settings.heuristic,
            "num_random": settings.num_random, "seed": settings.seed}


def _gas_meta(settings: ScreenSettings) -> object:
    return settings.gas_references if isinstance(settings.gas_references, str) else dict(settings.gas_references)


def _screen_meta(system: ScreenSystem, model: ScreenModel, reference: Labeller | None, settings: ScreenSettings,
                 energy_kind: str) -> dict:
    """What a screen's results depend on (``top_k`` is not: a larger k only verifies more)."""
    return {**_placement_meta(system, settings), "model": model.label, "energy": energy_kind,
            "dtype": str(model.potential.dtype) if model.potential is not None else None,
            "fmax": settings.fmax, "max_steps": settings.max_steps, "optimizer": settings.optimizer,
            "optimizer_kwargs": dict(settings.optimizer_kwargs), "reference": reference.key if reference else None,
            "verify": settings.verify, "verify_fmax": settings.verify_fmax, "verify_steps": settings.verify_steps,
            "gas": _gas_meta(settings), "gas_source": settings.gas_source, "anomaly": asdict(settings.anomaly)}


def check_system(system: ScreenSystem, model: ScreenModel | None, reference: Labeller | None) -> None:
    """``ValueError`` naming the elements of ``system`` that the model or the reference lacks."""
    elements = set(system.slab.get_chemical_symbols()) | set(system.adsorbate.atoms.get_chemical_symbols())
    if model is not None and model.elements is not None and not elements <= model.elements:
        raise ValueError(f"model {model.label!r} has no {', '.join(sorted(elements - model.elements))}"
                         f" (it covers {', '.join(sorted(model.elements))})")
    if reference is not None:
        try:
            check_elements(reference, elements)
        except ValueError as err:
            raise ValueError(f"reference {err}") from None


def _placements(system: ScreenSystem, store: ScreenStore, settings: ScreenSettings) -> dict[str, Atoms]:
    """The initial configurations by ``config_id``: made and stored on the first call, read back after."""
    if store.count("placement") == 0:
        made = make_placements(system.slab, system.adsorbate, heuristic=settings.heuristic,
                               num_random=settings.num_random, seed=settings.seed)
        store.add_many("placement", [(p.atoms, {"config_id": p.config_id, "site": p.site}) for p in made])
    return {row.config_id: row.toatoms() for row in store.rows("placement")}


def _check_gas_elements(system: ScreenSystem, settings: ScreenSettings) -> None:
    """``ValueError`` before any work when a per-element gas reference lacks an adsorbate element."""
    if settings.gas_references == "molecule":
        return
    known = set(OC20_REFERENCES) if isinstance(settings.gas_references, str) else set(settings.gas_references)
    adsorbate_reference(system.adsorbate.atoms.get_chemical_symbols(), dict.fromkeys(known, 0.0))


def _gas_references(system: ScreenSystem, store: ScreenStore, source: str,
                    calculator: Callable[[], BaseCalculator] | None, settings: ScreenSettings) -> None:
    """Store the gas reference of ``source`` (``'ml'`` or ``'reference'``) unless there already:
    the adsorbate molecule's energy (``molecule``) or per-element energies ε_Z (the others)."""
    if calculator is None or store.row("gas", source=source) is not None:
        return
    if settings.gas_references == "molecule":
        data = {"molecule": gas_energy(system.adsorbate.atoms, calculator())}
    elif settings.gas_references == "elements":
        data = {"references": molecule_references(calculator())}
    elif settings.gas_references == "oc20":
        data = {"references": dict(OC20_REFERENCES)}
    else:
        data = {"references": check_references(settings.gas_references)}
    store.add("gas", source=source, data=data)


def _ml_slab(system: ScreenSystem, model: ScreenModel, store: ScreenStore, settings: ScreenSettings) -> Atoms:
    """The clean slab relaxed with the ML model (the engine for ours, ASE for a calculator), stored
    on the first call; ``ValueError`` when the model fails on it."""
    if store.row("ml_slab") is None:
        if model.potential is not None:
            result = next(iter(relax_batch([system.slab], model.potential, optimizer=settings.optimizer,
                                           fmax=settings.fmax, max_steps=settings.max_steps,
                                           device=model.potential.device, dtype=model.potential.dtype,
                                           optimizer_kwargs=settings.optimizer_kwargs)))
        else:
            result = _relax_with(system.slab, model.calculator(), settings.fmax, settings.max_steps,
                                 settings.optimizer, settings.optimizer_kwargs)
        _check_slab_relaxation(system, result, "model", settings)
        store.add("ml_slab", result.atoms, steps=result.steps)
    return store.row("ml_slab").toatoms()


def _relax_placements(todo: list[tuple[str, Atoms]], model: ScreenModel, settings: ScreenSettings,
                      store: ScreenStore, clean_slab: Atoms | None, timer: Timer) -> None:
    """ML-relax the ``todo`` placements, flag anomalies and store each as soon as it finishes."""
    if not todo:
        return
    if model.potential is not None:
        results = relax_batch([atoms for _, atoms in todo], model.potential, optimizer=settings.optimizer,
                              fmax=settings.fmax, max_steps=settings.max_steps, device=model.potential.device,
                              dtype=model.potential.dtype, max_atoms=settings.max_atoms,
                              optimizer_kwargs=settings.optimizer_kwargs)
    else:
        calculator = model.calculator()
        results = (_relax_with(atoms, calculator, settings.fmax, settings.max_steps, settings.optimizer,
                               settings.optimizer_kwargs, index=k) for k, (_, atoms) in enumerate(todo))
    start = time.perf_counter()
    anomaly_seconds = 0.0
    for result in results:
        cid, initial = todo[result.index]
        tick = time.perf_counter()
        anomalies = _anomalies(initial, result, clean_slab, settings)
        store.add("ml", result.atoms, **_relax_keys(cid, result, anomalies))
        anomaly_seconds += time.perf_counter() - tick
    timer.seconds["anomaly"] += anomaly_seconds
    timer.seconds["relaxation"] += time.perf_counter() - start - anomaly_seconds


def _relax_with(atoms: Atoms, calculator: BaseCalculator, fmax: float, steps: int, optimizer: str,
                optimizer_kwargs, index: int = 0) -> RelaxResult:
    """ASE's relaxation of ``atoms`` with ``calculator``; a calculator's exception becomes ``error``
    (starting with :data:`RAISED`). Of ``optimizer_kwargs`` only ``maxstep`` [Å] applies here."""
    try:
        result = relax(atoms, calculator, optimizer=optimizer, fmax=fmax, steps=steps, fix="none",
                       maxstep=optimizer_kwargs.get("maxstep"))
    except Exception as err:  # a user's calculator may raise anything; the configuration is recorded as failed
        failed = atoms.copy()
        return RelaxResult(index, failed, False, 0, float("nan"), [float("nan")], [float("nan")],
                           error=f"{RAISED}: {type(err).__name__}: {err}")
    result.index = index
    return result


def _anomalies(initial: Atoms, result: RelaxResult, clean_slab: Atoms | None, settings: ScreenSettings) -> list[str]:
    """The anomaly kinds of a relaxation from ``initial``: ``non_finite`` for a non-finite energy or
    force, ``failed`` when the calculator raised or the geometry was refused, else the detector's."""
    if result.error is not None:
        return ["non_finite"] if result.error.startswith(NON_FINITE) else [FAILED]
    return detect_anomalies(initial, result.atoms, clean_slab, settings.anomaly)


def _relax_keys(cid: str, result: RelaxResult, anomalies: list[str]) -> dict:
    energy = result.energies[-1]
    return {"config_id": cid, "steps": result.steps, "converged": result.converged,
            "relaxed_energy": energy if np.isfinite(energy) else None,
            "anomalies": ",".join(anomalies), "error": result.error}


def _check_slab_relaxation(system: ScreenSystem, result: RelaxResult, who: str, settings: ScreenSettings) -> None:
    """``ValueError`` when the ``who`` (model or reference) fails on the clean slab, or its relaxation
    changes the slab's bonding (:func:`.anomaly.surface_changed`): every adsorption energy would be
    measured against a broken surface."""
    if result.error is not None or not np.isfinite(result.energies[-1]):
        raise ValueError(f"the {who} fails on the clean slab ({result.error or result.energies[-1]})")
    if surface_changed(system.slab, result.atoms, settings.anomaly):
        raise ValueError(f"the {who}'s relaxation of the clean slab changes its bonding (the surface "
                         f"reconstructs or comes apart: is the bulk's lattice constant the {who}'s?)")


def _reference_slab(system: ScreenSystem, calculator: BaseCalculator, store: ScreenStore,
                    settings: ScreenSettings) -> Atoms:
    """The clean slab relaxed with the reference (stored on the first call); ``ValueError`` when the
    reference fails on it or its relaxation changes the slab's bonding."""
    if store.row("ref_slab") is None:
        result = _relax_with(system.slab, calculator, settings.verify_fmax, settings.verify_steps, "LBFGS", {})
        _check_slab_relaxation(system, result, "reference", settings)
        store.add("ref_slab", result.atoms, ionic_steps=result.steps + 1)
    return store.row("ref_slab").toatoms()


def _verify(system: ScreenSystem, reference: Labeller, store: ScreenStore, settings: ScreenSettings,
            energy_kind: str) -> None:
    """Reference single points or relaxations of the ``top_k`` lowest-energy valid ML configurations."""
    ranked = system_result(system.name, store, settings, energy_kind).valid
    done = store.config_ids("verify")
    todo = [c.config_id for c in ranked[: settings.top_k] if c.config_id not in done]
    if not todo:
        return
    calculator = reference.calculator()
    slab = _reference_slab(system, calculator, store, settings)
    _gas_references(system, store, "reference", reference.calculator, settings)
    for cid in todo:
        relaxed = store.row("ml", config_id=cid).toatoms()
        if settings.verify == "sp":
            energy, error = _single_point(relaxed, calculator)
            atoms, steps, anomalies = relaxed, 1, []
            atoms.calc = SinglePointCalculator(atoms, energy=energy) if error is None else None
        else:
            result = _relax_with(relaxed, calculator, settings.verify_fmax, settings.verify_steps, "LBFGS", {})
            energy, error, atoms, steps = result.energies[-1], result.error, result.atoms, result.steps + 1
            anomalies = _anomalies(relaxed, result, slab, settings)
        if error is None and not np.isfinite(energy):
            error = f"{NON_FINITE} reference energy {energy}"
        store.add("verify", atoms, config_id=cid, reference_energy=energy if error is None else None, error=error,
                  ionic_steps=steps, anomalies=",".join(anomalies))


def _single_point(atoms: Atoms, calculator: BaseCalculator) -> tuple[float, str | None]:
    """The reference energy of ``atoms`` [eV] and None, or NaN and what went wrong."""
    try:
        atoms.calc = calculator
        return float(atoms.get_potential_energy()), None
    except Exception as err:  # a reference calculator (VASP, ...) may fail in any way; recorded, others go on
        return float("nan"), f"{type(err).__name__}: {err}"
