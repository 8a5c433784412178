"""The batched relaxation engine: many structures, one model call per optimizer step for all of them.

Structures of any sizes share one batched graph (:class:`equicalc.SystemBatch`); each step the
model evaluates energies and forces of every structure in the batch at once, each structure is
tested for convergence on its own (ASE's test: the largest force norm over its free atoms below
``fmax``), finished ones leave the batch and yield their result at once, the others take one
step of their own optimizer (batched FIRE or L-BFGS, each system exactly as ASE's optimizer would
move it alone), and waiting structures take the places freed, within a budget of atoms
(:mod:`workflows.relax.autobatch`).
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms
from torch import Tensor

from equicalc import SystemBatch, predict
from equicalc.models import prepare_model, resolve_device, resolve_dtype, resolve_model
from potentials import Potential
from potentials.base import check_number
from potentials.nn import scatter_sum

from .autobatch import estimate_max_atoms
from .fire import BatchedFIRE, FIREParameters
from .lbfgs import BatchedLBFGS, LBFGSParameters
from .optimizer import BatchedOptimizer, system_max
from .result import RelaxResult

#: optimizer name -> (batched optimizer, its parameters)
OPTIMIZERS = {"FIRE": (BatchedFIRE, FIREParameters), "LBFGS": (BatchedLBFGS, LBFGSParameters)}


def relax_batch(
    structures: Sequence[Atoms],
    model: Potential | str | os.PathLike,
    *,
    optimizer: str = "FIRE",
    fmax: float = 0.05,
    max_steps: int | Sequence[int] = 500,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "float64",
    max_atoms: int | None = None,
    optimizer_kwargs: Mapping[str, float] | None = None,
    progress: bool = False,
) -> Iterator[RelaxResult]:
    """Relax every structure with ASE's FIRE or L-BFGS, all in one batch; yield each result as it finishes.

    Each structure follows the trajectory ASE's optimizer (``ase.optimize.FIRE`` or ``LBFGS``,
    ASE 3.29, default parameters unless ``optimizer_kwargs`` says otherwise) takes on it alone with
    the same model through :class:`equicalc.EquiCalculator`, to rounding error: same steps, same
    per-structure step-length cap (FIRE: the norm of the structure's whole displacement, at most
    ``maxstep``; L-BFGS: no atom moves more than ``maxstep``), same convergence test and step count.
    Optimizer state is float64 whatever the network's precision. Atoms fixed by ``FixAtoms``
    constraints (e.g. OC20's tag-0 subsurface atoms) never move, and their forces are left out of
    ``fmax`` (ASE zeroes them). Conservative and direct-force models both work (a direct-force
    model runs its forward pass alone, under ``torch.inference_mode()``).

    A structure whose energy or forces turn non-finite, or whose geometry the graph builder refuses
    (atoms that coincide), stops with ``error`` set and ``converged`` False; the others go on.

    Args:
        structures: the structures (``n_i`` atoms each, any mix of sizes and periodicities); only
            ``FixAtoms`` constraints are allowed. They are not changed.
        model: a :class:`potentials.Potential`, a checkpoint path or a registered model name.
        optimizer: ``"FIRE"`` or ``"LBFGS"``.
        fmax: convergence threshold on the largest force norm over free atoms [eV/Å], > 0.
        max_steps: the most optimizer steps per structure, >= 0 (one number for all, or one per
            structure).
        device: ``'cpu'``, ``'cuda'``, ``'cuda:N'`` or ``'auto'``.
        dtype: the network's precision, ``'float32'`` or ``'float64'`` (geometry is float64 either way).
        max_atoms: the batch budget [atoms]: structures join the batch while the atoms in it stay
            within it (a structure larger than the budget runs alone). None: estimated
            (:func:`workflows.relax.autobatch.estimate_max_atoms`: from a trial evaluation's memory
            on CUDA, a measured default on CPU).
        optimizer_kwargs: ASE's keyword arguments of the optimizer (FIRE: ``dt``, ``maxstep``,
            ``dtmax``, ``Nmin``, ``finc``, ``fdec``, ``astart``, ``fa``, ``a``; LBFGS: ``maxstep``,
            ``memory``, ``damping``, ``alpha``).
        progress: show a progress bar over finished structures (tqdm, on stderr).

    Yields:
        One :class:`RelaxResult` per structure, in the order they finish, ``index`` its position in
        ``structures``; ``energies`` and ``fmaxes`` hold ``steps + 1`` values (the initial
        evaluation first). ``atoms`` is a copy of the input at its final positions with a
        ``SinglePointCalculator`` (energy [eV], forces on all atoms [eV/Å], fixed ones included);
        when the graph builder refused the geometry it has no calculator, and the last values of
        ``energies`` and ``fmaxes`` are NaN.

    Raises:
        ValueError: no structures; a structure with no atoms, with a constraint other than
            ``FixAtoms``, with an element the model lacks, or with non-finite or degenerate
            geometry; ``fmax`` <= 0; a negative ``max_steps`` (or a list of another length); an
            unknown optimizer or optimizer keyword, or a bad value of one; ``max_atoms`` < 1; an
            unknown device, dtype or model. All are raised at the call, before any relaxation step.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    optimizer_class, parameters_class = OPTIMIZERS[optimizer]
    parameters = _parameters(parameters_class, optimizer, optimizer_kwargs)
    fmax = check_number(fmax, "fmax", float, minimum=0, inclusive=False, unit="eV/Å")
    if max_atoms is not None:
        max_atoms = check_number(max_atoms, "max_atoms", int, minimum=1)
    structures = list(structures)
    if not structures:
        raise ValueError("structures: empty, nothing to relax")
    limits = _step_limits(max_steps, len(structures))
    device = resolve_device(device)
    resolved, _ = resolve_model(model)
    resolved = prepare_model(resolved, device, resolve_dtype(dtype), owned=resolved is not model)
    jobs = [_job(k, atoms, limits[k], resolved) for k, atoms in enumerate(structures)]
    engine = _Engine(resolved, optimizer_class(parameters, device), fmax, device)
    if max_atoms is None:
        max_atoms = estimate_max_atoms(resolved, structures, device, engine.optimizer.bytes_per_atom())
    return engine.run(jobs, max_atoms, progress)


@dataclass
class _Job:
    """One structure on its way: input, limits and what the host keeps of its relaxation."""

    index: int
    atoms: Atoms
    free: np.ndarray  # (n_atoms,) bool: not fixed by FixAtoms
    max_steps: int
    steps: int = 0
    energies: list[float] = field(default_factory=list)
    fmaxes: list[float] = field(default_factory=list)


class _Engine:
    """The batch in flight: flat device tensors of the active structures and their optimizer."""

    def __init__(self, model: Potential, optimizer: BatchedOptimizer, fmax: float, device: torch.device) -> None:
        self.model = model
        self.optimizer = optimizer
        self.fmax = fmax
        self.device = device
        self.jobs: list[_Job] = []
        self.sizes = np.zeros(0, dtype=np.int64)
        self.positions = torch.zeros((0, 3), dtype=torch.float64, device=device)
        self.numbers = torch.zeros(0, dtype=torch.long, device=device)
        self.free = torch.zeros(0, dtype=torch.bool, device=device)
        self.cell = torch.zeros((0, 3, 3), dtype=torch.float64, device=device)
        self.pbc = torch.zeros((0, 3), dtype=torch.bool, device=device)
        self.batch = torch.zeros(0, dtype=torch.long, device=device)

    def run(self, jobs: list[_Job], max_atoms: int, progress: bool) -> Iterator[RelaxResult]:
        from tqdm import tqdm

        waiting = list(jobs)
        self.max_atoms = max_atoms
        self.smallest = min(len(job.atoms) for job in jobs)  # no structure fits in less room
        bar = tqdm(total=len(jobs), unit="structure", desc="relax", disable=not progress, leave=False)
        with bar:
            self._admit(waiting)
            while self.jobs:
                finished = self._step()
                self._admit(waiting)
                bar.update(len(finished))
                bar.set_postfix(batch=len(self.jobs), refresh=False)
                yield from finished

    # -- one step of every structure in the batch -------------------------------------------------

    def _step(self) -> list[RelaxResult]:
        """Evaluate the batch, retire finished structures, step the others; the retired's results."""
        finished, energy, forces = self._evaluate()
        if not self.jobs:
            return finished
        n = len(self.jobs)
        constrained = torch.where(self.free[:, None], forces, 0.0)  # ASE's FixAtoms.adjust_forces
        fmax = system_max(torch.linalg.vector_norm(constrained, dim=1), self.batch, n)
        finite = torch.isfinite(energy) & torch.isfinite(scatter_sum(forces.abs().sum(dim=1), self.batch, n))
        host = torch.stack([energy, fmax, finite.to(torch.float64)]).cpu().numpy()  # the step's one sync
        done = np.zeros(n, dtype=bool)
        errors: dict[int, str] = {}
        for k, job in enumerate(self.jobs):
            job.energies.append(float(host[0, k]))
            job.fmaxes.append(float(host[1, k]))
            if not host[2, k]:
                errors[k] = f"non-finite energy or forces at step {job.steps}"
            done[k] = k in errors or host[1, k] < self.fmax or job.steps >= job.max_steps
        if done.any():
            retired, kept_atoms = self._retire(done, errors, forces)
            finished += retired
            constrained = constrained.index_select(0, kept_atoms)
        if self.jobs:
            step = self.optimizer.step(self.positions, constrained, self.batch, len(self.jobs))
            self.positions = torch.where(self.free[:, None], self.positions + step, self.positions)
            for job in self.jobs:
                job.steps += 1
        return finished

    def _evaluate(self) -> tuple[list[RelaxResult], Tensor | None, Tensor | None]:
        """The results of structures whose geometry the graph builder refuses (retired with the
        error), then the energies ``(n_systems,)`` [eV] and forces ``(n_atoms, 3)`` [eV/Å], float64,
        of the structures left in the batch (None when none is left)."""
        try:
            return [], *self._predict(0, len(self.jobs))
        except ValueError:
            refused = {}
            for k in range(len(self.jobs)):
                try:
                    self._predict(k, k + 1)
                except ValueError as err:
                    refused[k] = str(err)
            if not refused:
                raise
        for k, job in enumerate(self.jobs):
            if k in refused:
                job.energies.append(float("nan"))
                job.fmaxes.append(float("nan"))
        done = np.array([k in refused for k in range(len(self.jobs))])
        finished, _ = self._retire(done, refused, None)
        if not self.jobs:
            return finished, None, None
        more, energy, forces = self._evaluate()
        return finished + more, energy, forces

    def _predict(self, first: int, last: int) -> tuple[Tensor, Tensor]:
        """Energies and forces (float64) of systems ``first`` to ``last - 1``, in chunks of consecutive
        systems within the budget (one chunk, unless the device ran out of memory: then the budget
        halves and the chunk is evaluated again in smaller ones)."""
        offsets = np.concatenate([[0], np.cumsum(self.sizes)])
        energies, forces = [], []
        start = first
        while start < last:
            end = start + 1
            while end < last and offsets[end + 1] - offsets[start] <= self.max_atoms:
                end += 1
            try:
                energy, force = self._predict_chunk(start, end, int(offsets[start]), int(offsets[end]))
            except torch.cuda.OutOfMemoryError:
                if end - start == 1:
                    raise
                torch.cuda.empty_cache()
                self.max_atoms = max(self.smallest, int(offsets[end] - offsets[start]) // 2)
                continue
            energies.append(energy)
            forces.append(force)
            start = end
        return torch.cat(energies), torch.cat(forces)

    def _predict_chunk(self, first: int, last: int, lo: int, hi: int) -> tuple[Tensor, Tensor]:
        """Energies and forces of systems ``first`` to ``last - 1``, whose atoms are rows ``lo`` to ``hi - 1``."""
        whole = first == 0 and last == len(self.jobs)
        systems = SystemBatch(
            positions=self.positions if whole else self.positions[lo:hi],
            numbers=self.numbers if whole else self.numbers[lo:hi],
            cell=self.cell[first:last],
            pbc=self.pbc[first:last],
            batch=self.batch if whole else self.batch[lo:hi] - first,
        )
        with torch.inference_mode(self.model.direct_forces):
            out = predict(self.model, systems, forces=True, stress=False)
        return out.energy.detach().to(torch.float64), out.forces.detach().to(torch.float64)

    # -- structures leaving and joining ------------------------------------------------------------

    def _retire(
        self, done: np.ndarray, errors: dict[int, str], forces: Tensor | None
    ) -> tuple[list[RelaxResult], Tensor]:
        """Take the structures marked ``done`` out of the batch; their results, and the rows of the
        atoms that stay (indices into the rows before)."""
        offsets = np.concatenate([[0], np.cumsum(self.sizes)])
        leaving = np.flatnonzero(done)
        rows = np.concatenate([np.arange(offsets[k], offsets[k + 1]) for k in leaving])
        rows_device = torch.as_tensor(rows, device=self.device)
        final = self.positions.index_select(0, rows_device)
        if forces is not None:
            final = torch.cat([final, forces.index_select(0, rows_device)], dim=1)
        final = final.cpu().numpy()
        results, start = [], 0
        for k in leaving:
            job, n = self.jobs[k], int(self.sizes[k])
            block, start = final[start:start + n], start + n
            atoms = job.atoms.copy()
            atoms.set_positions(block[:, :3], apply_constraint=False)
            if forces is not None:
                energy = job.energies[-1]
                atoms.calc = SinglePointCalculator(atoms, energy=energy, free_energy=energy, forces=block[:, 3:])
            results.append(RelaxResult(
                index=job.index, atoms=atoms, converged=k not in errors and job.fmaxes[-1] < self.fmax,
                steps=job.steps, fmax=job.fmaxes[-1], energies=job.energies, fmaxes=job.fmaxes,
                error=errors.get(k),
            ))
        kept = np.flatnonzero(~done)
        kept_rows = np.concatenate([np.arange(offsets[k], offsets[k + 1]) for k in kept] or [np.zeros(0, int)])
        kept_atoms = torch.as_tensor(kept_rows, dtype=torch.long, device=self.device)
        kept_systems = torch.as_tensor(kept, dtype=torch.long, device=self.device)
        self.positions = self.positions.index_select(0, kept_atoms)
        self.numbers = self.numbers.index_select(0, kept_atoms)
        self.free = self.free.index_select(0, kept_atoms)
        self.cell = self.cell.index_select(0, kept_systems)
        self.pbc = self.pbc.index_select(0, kept_systems)
        self.optimizer.keep(kept, kept_systems, kept_atoms)
        self.jobs = [self.jobs[k] for k in kept]
        self.sizes = self.sizes[kept]
        self.batch = self._batch_index()
        return results, kept_atoms

    def _admit(self, waiting: list[_Job]) -> None:
        """Move waiting structures into the batch, first fit, while its atoms stay within the budget
        ``self.max_atoms`` (a structure larger than that joins an empty batch alone)."""
        room = self.max_atoms - int(self.sizes.sum())
        if not waiting or (self.jobs and room < self.smallest):
            return
        joining, staying = [], []
        for position, job in enumerate(waiting):
            if room < self.smallest and (self.jobs or joining):
                staying += waiting[position:]
                break
            n = len(job.atoms)
            if n <= room or not (self.jobs or joining):
                joining.append(job)
                room -= n
            else:
                staying.append(job)
        waiting[:] = staying
        if not joining:
            return
        as_tensor = torch.as_tensor
        self.positions = torch.cat([self.positions, as_tensor(
            np.concatenate([job.atoms.positions for job in joining]), dtype=torch.float64).to(self.device)])
        self.numbers = torch.cat([self.numbers, as_tensor(
            np.concatenate([job.atoms.numbers for job in joining]), dtype=torch.long).to(self.device)])
        self.free = torch.cat([self.free, as_tensor(np.concatenate([job.free for job in joining])).to(self.device)])
        self.cell = torch.cat([self.cell, as_tensor(
            np.array([job.atoms.cell.array for job in joining]), dtype=torch.float64).to(self.device)])
        self.pbc = torch.cat([self.pbc, as_tensor(np.array([job.atoms.pbc for job in joining])).to(self.device)])
        self.optimizer.add(len(joining), sum(len(job.atoms) for job in joining))
        self.jobs += joining
        self.sizes = np.concatenate([self.sizes, [len(job.atoms) for job in joining]]).astype(np.int64)
        self.batch = self._batch_index()

    def _batch_index(self) -> Tensor:
        """``(n_atoms,)``: each atom's system."""
        return torch.as_tensor(np.repeat(np.arange(len(self.sizes)), self.sizes), dtype=torch.long).to(self.device)


# -- checking the arguments ----------------------------------------------------------------------


def _parameters(parameters_class: type, optimizer: str, kwargs: Mapping[str, float] | None) -> object:
    """The optimizer's parameters from ASE's keyword arguments; ValueError naming an unknown one."""
    kwargs = dict(kwargs or {})
    known = parameters_class.__dataclass_fields__
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise ValueError(f"optimizer_kwargs: {optimizer} has no parameter {', '.join(map(repr, unknown))}; "
                         f"it takes {', '.join(known)}")
    return parameters_class(**kwargs)


def _step_limits(max_steps: int | Sequence[int], n: int) -> list[int]:
    """One step limit per structure from ``max_steps`` (a number or one per structure)."""
    if isinstance(max_steps, numbers.Integral) or not isinstance(max_steps, Sequence):
        return [check_number(max_steps, "max_steps", int, minimum=0)] * n
    if len(max_steps) != n:
        raise ValueError(f"max_steps: {len(max_steps)} limits for {n} structures")
    return [check_number(m, f"max_steps[{k}]", int, minimum=0) for k, m in enumerate(max_steps)]


def _job(index: int, atoms: Atoms, max_steps: int, model: Potential) -> _Job:
    """The job of one input structure, once checked (ValueError naming the structure otherwise)."""
    from equicalc import check_geometry

    if not isinstance(atoms, Atoms):
        raise ValueError(f"structure {index}: expected ase.Atoms, got {type(atoms).__name__}")
    if len(atoms) == 0:
        raise ValueError(f"structure {index}: no atoms")
    free = np.ones(len(atoms), dtype=bool)
    for constraint in atoms.constraints:
        if not isinstance(constraint, FixAtoms):
            raise ValueError(f"structure {index}: the batched engine honours FixAtoms constraints only, got "
                             f"{type(constraint).__name__} (relax it with workflows.relax.single.relax)")
        free[constraint.get_indices()] = False
    unknown = sorted(set(atoms.get_chemical_symbols()) - set(_symbols(model.elements)))
    if unknown:
        name = model.metadata.get("name", model.architecture)
        raise ValueError(f"structure {index}: model {name!r} does not know element(s) {', '.join(unknown)}")
    try:
        check_geometry(torch.as_tensor(atoms.positions), torch.as_tensor(atoms.cell.array), torch.as_tensor(atoms.pbc))
    except ValueError as err:
        raise ValueError(f"structure {index}: {err}") from err
    return _Job(index=index, atoms=atoms, free=free, max_steps=max_steps)


def _symbols(numbers_: Sequence[int]) -> list[str]:
    from ase.data import chemical_symbols

    return [chemical_symbols[z] for z in numbers_]
