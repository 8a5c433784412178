"""TorchSim users: our potentials behind TorchSim's model interface, and its batched FIRE on ASE Atoms.

Needs the optional extra ``pip install 'equicalc[torchsim]'`` (``torch-sim-atomistic`` 0.3.0, the
last release for Python 3.11). TorchSim keeps the cell as *columns* (``SimState.cell[s, :, k]`` is
lattice vector k) where ASE and :class:`equicalc.SystemBatch` keep rows; its units are ours (Å, eV,
eV/Å, eV/Å³) and its stress has ASE's sign (tensile positive: the cell filters take the virial as
``-V (stress + p)``, as ASE's do). TorchSim 0.3.0 has no constraints and one ``pbc`` flag for all
systems of a state; :func:`relax_with_torchsim` adds fixed atoms (ASE's ``FixAtoms``) and refuses
partly periodic structures.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch_sim as ts
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms
from torch import Tensor
from torch_sim.models.interface import ModelInterface
from torch_sim.optimizers import FireState
from torch_sim.quantities import systemwise_max_force

from equicalc import SystemBatch, predict
from equicalc.evaluate import has_stress
from equicalc.models import prepare_model, resolve_device, resolve_dtype, resolve_model
from potentials import Potential

from .relax.result import RelaxResult


class EquicalcModel(ModelInterface):
    """Any :class:`potentials.Potential` as a TorchSim model: one :func:`equicalc.predict` call per state.

    ``forward(state)`` takes a TorchSim ``SimState`` (or its dict) with ``positions`` (n_atoms, 3) [Å],
    ``cell`` (n_systems, 3, 3) [Å] in TorchSim's column convention, ``atomic_numbers`` (n_atoms,),
    ``system_idx`` (n_atoms,) and ``pbc`` (one flag, or one per axis), and returns ``energy``
    (n_systems,) [eV], ``forces`` (n_atoms, 3) [eV/Å] and, with ``compute_stress``, ``stress``
    (n_systems, 3, 3) = (1/V) dE/de [eV/Å³] (ASE's sign), detached, in the state's dtype. Geometry
    is evaluated in float64 whatever the state's dtype (as :class:`equicalc.EquiCalculator` does);
    the network runs in ``dtype``. Forces are -dE/dr by autograd, or the model's direct head
    (``model.direct_forces``, e.g. reference-compatible EquiformerV2: then TorchSim's NVE does not
    conserve energy). A state with a boolean per-atom attribute ``fixed`` gets zero forces on
    those atoms (what ASE's ``FixAtoms`` does to the forces an optimizer sees).

    Args:
        model: a :class:`potentials.Potential`, a checkpoint path or a registered name (see
            :func:`equicalc.models.resolve_model`); a model the caller holds is never changed.
        device: ``'cpu'``, ``'cuda'``, ``'cuda:N'`` or ``'auto'``; TorchSim builds its states here.
        dtype: ``'float64'`` or ``'float32'``: the network's precision and TorchSim's state dtype.
        compute_forces: return ``forces``.
        compute_stress: return ``stress`` (needs every system periodic with a 3-D cell).

    Raises:
        ValueError: a bad ``device``/``dtype`` or an unknown model name; from ``forward``, what
            :func:`equicalc.predict` refuses (unknown elements, coinciding atoms, a degenerate
            periodic cell), and ``compute_stress`` for a system with no periodic axis or no 3-D cell.

    Example:
        >>> from ase.build import bulk
        >>> model = EquicalcModel("lj-argon", device="cpu")
        >>> state = ts.io.atoms_to_state([bulk("Ar", "fcc", a=5.26, cubic=True)], model.device, model.dtype)
        >>> out = model(state)
        >>> round(float(out["energy"][0]) / 4, 4), tuple(out["stress"].shape)
        (-0.0783, (1, 3, 3))
    """

    def __init__(
        self,
        model: Potential | str | os.PathLike,
        *,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "float64",
        compute_forces: bool = True,
        compute_stress: bool = True,
    ) -> None:
        super().__init__()
        resolved, self.label = resolve_model(model)
        self._device = resolve_device(device)
        self._dtype = resolve_dtype(dtype)
        self.model = prepare_model(resolved, self._device, self._dtype, owned=resolved is not model)
        self._compute_forces = compute_forces
        self._compute_stress = compute_stress
        # a neighbour cap bounds the edges per atom; without one they grow with the density
        self._memory_scales_with = "n_atoms" if self.model.config.max_neighbors else "n_atoms_x_density"

    def forward(self, state: ts.SimState | dict[str, Tensor], **kwargs: Any) -> dict[str, Tensor]:
        """Energy (n_systems,) [eV], forces (n_atoms, 3) [eV/Å], stress (n_systems, 3, 3) [eV/Å³]."""
        field = state.get if isinstance(state, dict) else lambda name, default=None: getattr(state, name, default)
        systems = _system_batch(field, self._device)
        if self._compute_stress:
            undefined = torch.nonzero(~has_stress(systems.cell, systems.pbc)).flatten().tolist()
            if undefined:
                raise ValueError(
                    f"system(s) {undefined} have no periodic axis or no 3-D cell, so no stress: "
                    "use EquicalcModel(..., compute_stress=False) for molecules"
                )
        out = predict(self.model, systems, forces=self._compute_forces, stress=self._compute_stress)
        dtype = field("positions").dtype
        result = {"energy": out.energy.detach().to(dtype)}
        if self._compute_forces:
            forces = out.forces.detach().to(dtype)
            fixed = field("fixed")
            result["forces"] = forces if fixed is None else forces.masked_fill(fixed[:, None], 0.0)
        if self._compute_stress:
            result["stress"] = out.stress.detach().to(dtype)
        return result


def _system_batch(field: Any, device: torch.device) -> SystemBatch:
    """A TorchSim state's geometry as a float64 :class:`SystemBatch` (cell columns turned to rows)."""
    cell = field("cell").to(device=device, dtype=torch.float64).mT
    positions = field("positions").to(device=device, dtype=torch.float64)
    system_idx = field("system_idx")
    batch = torch.zeros(len(positions), dtype=torch.long, device=device) if system_idx is None else system_idx
    return SystemBatch(
        positions=positions,
        numbers=field("atomic_numbers").to(device=device, dtype=torch.long),
        cell=cell,
        pbc=torch.as_tensor(field("pbc"), dtype=torch.bool, device=device).expand(cell.shape[0], 3),
        batch=batch.to(device=device, dtype=torch.long),
    )


@dataclass(kw_only=True)
class _RelaxState(FireState):
    """TorchSim's FIRE state plus what its autobatcher must carry along for each structure.

    Attributes:
        fixed: ``(n_atoms,)`` bool, atoms held in place (their forces are zeroed by the model).
        structure: ``(n_systems,)`` index of each system in the caller's list.
        steps: ``(n_systems,)`` FIRE steps taken.
    """

    fixed: Tensor
    structure: Tensor
    steps: Tensor

    _atom_attributes = FireState._atom_attributes | {"fixed"}
    _system_attributes = FireState._system_attributes | {"structure", "steps"}


def relax_with_torchsim(
    structures: Sequence[Atoms],
    model: Potential | str | os.PathLike,
    *,
    fmax: float = 0.05,
    max_steps: int = 500,
    steps_between_swaps: int = 5,
    max_step: float = 0.2,
    max_atoms_per_batch: int | Literal["auto"] | None = None,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "float64",
) -> list[RelaxResult]:
    """Relax atomic positions (cells fixed) with TorchSim's batched FIRE (``ts.optimize``) and our model.

    TorchSim's ASE-flavoured FIRE (``ts.optimizers.fire``, the parameters of ASE's ``FIRE``:
    dt 0.1, dt_max 1.0, ``max_step`` on the whole structure's displacement) steps every structure
    in the batch at once; every ``steps_between_swaps`` steps TorchSim checks convergence, and
    finished structures leave the batch (``InFlightAutoBatcher``) while waiting ones join. A
    structure is finished when its fmax, the largest force norm over free atoms (ASE's
    definition), is below ``fmax``, when it has taken ``max_steps`` steps, or when its energy or
    forces stop being finite. So step counts are multiples of ``steps_between_swaps`` (1 makes
    them comparable with ASE's, whose ``FIRE`` this follows closely but not to the last digit:
    TorchSim updates the mixing parameter before mixing, ASE after), and a structure already
    relaxed still takes one block of steps. ``FixAtoms`` constraints are honoured: the model zeroes the
    forces on those atoms, so FIRE never moves them (TorchSim 0.3.0 has no constraints of its own).
    Ends with one batched evaluation of the final structures, for the forces on all atoms.

    Args:
        structures: the structures (n_atoms_i atoms each); all periodic along every axis (slabs with
            ``pbc=True`` and vacuum, as fairchem 2.x runs them), or all non-periodic. Not changed.
        model: a :class:`potentials.Potential`, a checkpoint path or a registered name.
        fmax: force threshold [eV/Å].
        max_steps: step limit per structure (rounded up to a multiple of ``steps_between_swaps``).
        steps_between_swaps: FIRE steps between convergence checks (TorchSim's default is 5).
        max_step: largest displacement norm of one structure in one step [Å].
        max_atoms_per_batch: at most this many atoms in one batch; None puts every structure in
            the first batch; ``'auto'`` lets TorchSim measure how many fit in GPU memory (CUDA only).
        device: ``'cpu'``, ``'cuda'``, ``'cuda:N'`` or ``'auto'``.
        dtype: ``'float64'`` or ``'float32'`` (network and TorchSim's state; geometry stays float64).

    Returns:
        One :class:`RelaxResult` per structure, in input order: the final structure (a copy of the
        input, with its tags, constraints and info, and a ``SinglePointCalculator`` holding the
        energy [eV] and forces on all atoms [eV/Å]), ``converged``, ``steps``, the final ``fmax``
        [eV/Å], and ``energies`` / ``fmaxes`` at the start and at every convergence check.

    Raises:
        ValueError: a non-positive ``fmax``, ``max_steps``, ``steps_between_swaps``, ``max_step``
            or ``max_atoms_per_batch`` (or a non-integer step count); ``'auto'`` on CPU; a structure
            larger than ``max_atoms_per_batch``;
            partly periodic structures or a mix of periodic and non-periodic ones; a constraint
            other than ``FixAtoms``; whatever :func:`equicalc.predict` refuses (unknown elements,
            coinciding atoms).

    Reference: Bitzek et al., Phys. Rev. Lett. 97, 170201 (2006) (FIRE); ASE ``ase.optimize.FIRE``.
    """
    _check_settings(fmax, max_steps, steps_between_swaps, max_step, max_atoms_per_batch)
    structures = list(structures)
    if not structures:
        return []
    sizes = [len(atoms) for atoms in structures]
    if isinstance(max_atoms_per_batch, int) and max(sizes) > max_atoms_per_batch:
        raise ValueError(f"structure {int(np.argmax(sizes))} has {max(sizes)} atoms, more than "
                         f"max_atoms_per_batch={max_atoms_per_batch}")
    fixed_atoms = _fixed_atoms(structures)
    evaluator = EquicalcModel(model, device=device, dtype=dtype, compute_stress=False)
    if max_atoms_per_batch == "auto" and evaluator.device.type != "cuda":
        raise ValueError("max_atoms_per_batch='auto' measures GPU memory: it needs a CUDA device")

    start = ts.io.atoms_to_state(structures, evaluator.device, evaluator.dtype)
    start.fixed = torch.as_tensor(fixed_atoms, device=evaluator.device)  # the model zeroes their forces
    init_fire, _ = ts.optimizers.fire(model=evaluator, max_step=max_step)
    initial = init_fire(start)  # one model call for every structure
    n = len(structures)
    state = _RelaxState(
        **vars(initial), fixed=start.fixed,
        structure=torch.arange(n, device=evaluator.device),
        steps=torch.zeros(n, dtype=torch.long, device=evaluator.device),
    )

    energies: list[list[float]] = [[e] for e in initial.energy.tolist()]
    fmaxes: list[list[float]] = [[f] for f in systemwise_max_force(initial).tolist()]
    errors: list[str | None] = [None] * n
    step_limit = -(-max_steps // steps_between_swaps) * steps_between_swaps

    def finished(batch: _RelaxState, last_energy: Tensor | None = None) -> Tensor:
        """Called by ts.optimize every ``steps_between_swaps`` steps: which systems leave the batch."""
        batch.steps += steps_between_swaps
        fmax_now = systemwise_max_force(batch)
        broken = ~(torch.isfinite(batch.energy) & torch.isfinite(fmax_now))
        for i, e, f, bad in zip(batch.structure.tolist(), batch.energy.tolist(), fmax_now.tolist(), broken.tolist()):
            energies[i].append(e)
            fmaxes[i].append(f)
            if bad:
                errors[i] = "the energy or the forces are not finite"
        return (fmax_now < fmax) | (batch.steps >= step_limit) | broken

    if max_atoms_per_batch is None:
        atoms_per_batch = start.n_atoms  # every structure in the first batch
    elif max_atoms_per_batch == "auto":
        atoms_per_batch = None  # TorchSim measures GPU memory (keeping 10 % spare)
    else:
        atoms_per_batch = max_atoms_per_batch
    batcher = ts.InFlightAutoBatcher(
        evaluator, memory_scales_with="n_atoms", max_memory_scaler=atoms_per_batch, max_memory_padding=0.9
    )
    final = ts.optimize(
        state, evaluator, optimizer=ts.optimizers.fire, max_step=max_step, convergence_fn=finished,
        autobatcher=batcher, steps_between_swaps=steps_between_swaps,
        # TorchSim's own limit counts the steps of all batches together, and warns when reached
        max_steps=step_limit * n + 1,
    )
    return _results(structures, final, evaluator, energies, fmaxes, errors, fmax)


def _check_settings(
    fmax: float, max_steps: int, steps_between_swaps: int, max_step: float, max_atoms_per_batch: int | str | None
) -> None:
    """Raise ``ValueError`` naming the first setting out of range."""
    for name, value in (("max_steps", max_steps), ("steps_between_swaps", steps_between_swaps)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    for name, value in (("fmax", fmax), ("max_steps", max_steps), ("steps_between_swaps", steps_between_swaps),
                        ("max_step", max_step)):
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value!r}")
    if max_atoms_per_batch not in (None, "auto") and not (
        isinstance(max_atoms_per_batch, int) and max_atoms_per_batch > 0
    ):
        raise ValueError(f"max_atoms_per_batch must be a positive integer, 'auto' or None, got {max_atoms_per_batch!r}")


def _fixed_atoms(structures: list[Atoms]) -> np.ndarray:
    """``(total atoms,)`` bool: atoms held by ``FixAtoms``; refuses what TorchSim 0.3.0 cannot hold.

    Raises:
        ValueError: partly periodic structures, periodic and non-periodic ones mixed, a constraint
            other than ``FixAtoms``.
    """
    periodic = bool(structures[0].pbc.all())
    masks = []
    for i, atoms in enumerate(structures):
        if atoms.pbc.any() and not atoms.pbc.all():
            raise ValueError(
                f"structure {i} is periodic along some axes only (pbc {tuple(bool(p) for p in atoms.pbc)}): "
                "TorchSim 0.3.0 keeps one pbc flag per state; set atoms.pbc = True (a slab whose vacuum is "
                "thicker than the model's cutoff has the same energy and forces)"
            )
        if bool(atoms.pbc.all()) != periodic:
            raise ValueError(
                f"structure {i} is {'periodic' if not periodic else 'not periodic'} unlike structure 0: "
                "TorchSim 0.3.0 relaxes periodic and non-periodic structures in separate calls"
            )
        mask = np.zeros(len(atoms), dtype=bool)
        for constraint in atoms.constraints:
            if not isinstance(constraint, FixAtoms):
                raise ValueError(
                    f"structure {i} has a {type(constraint).__name__} constraint: only FixAtoms is supported"
                )
            mask[constraint.get_indices()] = True
        masks.append(mask)
    return np.concatenate(masks)


def _results(
    structures: list[Atoms],
    final: _RelaxState,
    evaluator: EquicalcModel,
    energies: list[list[float]],
    fmaxes: list[list[float]],
    errors: list[str | None],
    fmax: float,
) -> list[RelaxResult]:
    """The final structures, evaluated once more together for the forces on fixed atoms too."""
    positions = final.positions.detach().to(device="cpu", dtype=torch.float64).numpy()
    system_idx = final.system_idx.cpu().numpy()
    steps = final.steps.tolist()
    relaxed: list[Atoms] = [None] * len(structures)
    taken: list[int] = [0] * len(structures)
    for k, i in enumerate(final.structure.tolist()):
        relaxed[i] = structures[i].copy()
        relaxed[i].positions = positions[system_idx == k]
        taken[i] = steps[k]
    systems = SystemBatch.from_atoms(relaxed, dtype=torch.float64, device=evaluator.device)
    out = predict(evaluator.model, systems, stress=False)
    energy = out.energy.detach().cpu().tolist()
    forces = out.forces.detach().to(device="cpu", dtype=torch.float64).numpy()
    offsets = np.cumsum([0] + [len(a) for a in relaxed])
    results = []
    for i, atoms in enumerate(relaxed):
        atoms.calc = SinglePointCalculator(atoms, energy=energy[i], forces=forces[offsets[i]:offsets[i + 1]])
        results.append(RelaxResult(
            index=i, atoms=atoms, converged=errors[i] is None and fmaxes[i][-1] < fmax, steps=taken[i],
            fmax=fmaxes[i][-1], energies=energies[i], fmaxes=fmaxes[i], error=errors[i],
        ))
    return results
