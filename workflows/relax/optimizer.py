"""What every batched optimizer shares: state on flat tensors that follows systems in and out of a batch.

The batch is laid out as :class:`equicalc.SystemBatch` lays it out: the atoms of all systems in one
``(n_atoms, 3)`` tensor, each system's atoms contiguous, ``batch`` giving each atom's system. An
optimizer keeps per-atom state (velocities, L-BFGS history) on the same rows and per-system state
(time steps, counters) in system order; when systems leave the batch the engine calls
:meth:`BatchedOptimizer.keep`, when new ones join :meth:`BatchedOptimizer.add`, which gives them
the fresh state ASE's optimizer starts with.
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np
import torch
from torch import Tensor

from potentials.nn import scatter_sum


@dataclass(frozen=True)
class Field:
    """One tensor of optimizer state.

    Attributes:
        per: ``"atom"`` or ``"system"``: what the axis marked ``None`` in ``shape`` runs over.
        shape: the tensor's shape, ``None`` at the atom or system axis (e.g. ``(None, 3)``).
        fill: the value a system's entries start with when it joins the batch.
        dtype: the tensor's dtype.
        host: a numpy array in host memory instead (counters the host reads without waiting
            for the device).
    """

    per: str
    shape: tuple[int | None, ...]
    fill: float | int | bool
    dtype: torch.dtype
    host: bool = False

    @property
    def axis(self) -> int:
        return self.shape.index(None)


class BatchedOptimizer:
    """Base class: subclasses declare their state in :meth:`fields` and implement :meth:`step`.

    State tensors are attributes named as in :meth:`fields`, in float64 for positions, forces and
    everything derived from them, whatever the network's precision.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        for name, spec in self.fields().items():
            setattr(self, name, self._fresh(spec, 0))

    def fields(self) -> dict[str, Field]:
        """Name -> :class:`Field` of every state tensor."""
        raise NotImplementedError

    def step(self, positions: Tensor, forces: Tensor, batch: Tensor, n_systems: int) -> Tensor:
        """The displacement ``(n_atoms, 3)`` [Å] each system takes from ``positions`` ``(n_atoms, 3)``
        [Å] with ``forces`` ``(n_atoms, 3)`` [eV/Å] (zero on fixed atoms), advancing the state one step.

        ``batch`` ``(n_atoms,)`` is each atom's system, ``n_systems`` their number.
        """
        raise NotImplementedError

    def bytes_per_atom(self) -> int:
        """Memory the per-atom state takes per atom [bytes] (for the batch budget)."""
        total = 0
        for spec in self.fields().values():
            if spec.per == "atom" and not spec.host:
                size = torch.empty(0, dtype=spec.dtype).element_size()
                total += size * int(np.prod([n for n in spec.shape if n is not None]))
        return total

    def keep(self, systems: np.ndarray, system_index: Tensor, atom_index: Tensor) -> None:
        """Keep the state of the systems ``systems`` (host indices, in their new order; the same on
        the device: ``system_index``) whose atoms are the rows ``atom_index``, in the same order."""
        for name, spec in self.fields().items():
            state = getattr(self, name)
            if spec.host:
                setattr(self, name, np.take(state, systems, axis=spec.axis))
            else:
                index = atom_index if spec.per == "atom" else system_index
                setattr(self, name, state.index_select(spec.axis, index))

    def add(self, n_systems: int, n_atoms: int) -> None:
        """Append fresh state for ``n_systems`` new systems of ``n_atoms`` atoms in all, after the others."""
        for name, spec in self.fields().items():
            fresh = self._fresh(spec, n_atoms if spec.per == "atom" else n_systems)
            join = np.concatenate if spec.host else torch.cat
            setattr(self, name, join([getattr(self, name), fresh], spec.axis))

    def _fresh(self, spec: Field, count: int) -> Tensor | np.ndarray:
        shape = tuple(count if size is None else size for size in spec.shape)
        if spec.host:
            return np.full(shape, spec.fill, dtype=torch.empty(0, dtype=spec.dtype).numpy().dtype)
        return torch.full(shape, spec.fill, dtype=spec.dtype, device=self.device)


def system_dot(u: Tensor, v: Tensor, batch: Tensor, n_systems: int) -> Tensor:
    """``(n_systems,)``: the dot product of ``u`` and ``v`` ``(n_atoms, 3)`` over each system's atoms,
    ``np.vdot`` of the system's flattened rows."""
    return scatter_sum((u * v).sum(dim=1), batch, n_systems)


def system_max(values: Tensor, batch: Tensor, n_systems: int) -> Tensor:
    """``(n_systems,)``: the largest of the non-negative ``values`` ``(n_atoms,)`` in each system
    (0 for a system with no atoms; NaN when any is NaN)."""
    out = values.new_zeros(n_systems)
    return out.scatter_reduce(0, batch, values, "amax", include_self=True)
