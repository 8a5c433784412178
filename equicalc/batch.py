"""Stacking ``ase.Atoms`` into the flat tensors a batched graph is built from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
from ase import Atoms
from ase.data import chemical_symbols
from torch import Tensor


@dataclass
class SystemBatch:
    """Several systems as flat tensors (atoms of one system contiguous).

    Attributes:
        positions: ``(n_atoms, 3)`` [Å].
        numbers: ``(n_atoms,)`` atomic numbers.
        cell: ``(n_systems, 3, 3)`` lattice vectors as rows [Å].
        pbc: ``(n_systems, 3)`` periodicity.
        batch: ``(n_atoms,)`` system index of each atom.
    """

    positions: Tensor
    numbers: Tensor
    cell: Tensor
    pbc: Tensor
    batch: Tensor

    @classmethod
    def from_atoms(cls, atoms: Atoms | Sequence[Atoms], *, dtype: torch.dtype, device: torch.device | str) -> SystemBatch:
        """Stack one or several ``Atoms`` (geometry is checked when the graph is built)."""
        systems = [atoms] if isinstance(atoms, Atoms) else list(atoms)
        positions = np.concatenate([a.positions for a in systems]) if systems else np.zeros((0, 3))
        sizes = torch.tensor([len(a) for a in systems], dtype=torch.long)
        return cls(
            positions=torch.as_tensor(positions, dtype=dtype, device=device).reshape(-1, 3),
            numbers=torch.as_tensor(np.concatenate([a.numbers for a in systems] or [[]]), dtype=torch.long, device=device),
            cell=torch.as_tensor(np.array([a.cell.array for a in systems]).reshape(-1, 3, 3), dtype=dtype, device=device),
            pbc=torch.as_tensor(np.array([a.pbc for a in systems]).reshape(-1, 3), dtype=torch.bool, device=device),
            batch=torch.repeat_interleave(torch.arange(len(systems)), sizes).to(device),
        )

    def clone(self) -> SystemBatch:
        """A copy with every tensor cloned (made outside inference mode: tensors autograd accepts)."""
        return SystemBatch(**{f.name: getattr(self, f.name).clone() for f in fields(self)})

    @property
    def n_systems(self) -> int:
        return self.cell.shape[0]

    def check_elements(self, elements: Sequence[int], model_name: str) -> None:
        """Raise ``ValueError`` naming every atomic number not in ``elements``."""
        present = torch.unique(self.numbers).tolist()
        unknown = sorted(set(present) - set(elements))
        if unknown:
            names = ", ".join(f"{symbol(z)} (Z={z})" for z in unknown)
            known = " ".join(symbol(z) for z in elements) if len(elements) < 30 else f"{len(elements)} elements"
            raise ValueError(f"model {model_name!r} does not know element(s) {names}; it supports {known}")


def symbol(z: int) -> str:
    """The chemical symbol of atomic number ``z`` ('?' outside the periodic table)."""
    return chemical_symbols[z] if 0 <= z < len(chemical_symbols) else "?"
