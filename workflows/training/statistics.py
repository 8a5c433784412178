"""Statistics of the training data that set a model up before training: per-element reference energies
and the average sizes that normalise message sums."""

from __future__ import annotations

import numpy as np
import torch
from ase.data import chemical_symbols

from equicalc import SystemBatch, radius_graph

from .frames import Frame


def fit_reference_energies(frames: list[Frame], elements: tuple[int, ...]) -> tuple[float, ...]:
    """Per-element energies E0 [eV] in ``elements`` order minimising sum_s (E_s - sum_Z n_sZ E0_Z)^2,
    the least-squares fit fairchem's ``compute_lin_ref`` and MACE's ``E0s='average'`` make.

    Elements that only ever occur in a fixed ratio make the fit under-determined; numpy's
    minimum-norm solution is taken then (only the combination the data fixes matters to the loss).
    """
    column = {z: k for k, z in enumerate(elements)}
    counts = np.zeros((len(frames), len(elements)))
    for s, frame in enumerate(frames):
        for z, n in zip(*np.unique(frame.atoms.numbers, return_counts=True)):
            counts[s, column[int(z)]] = n
    energies = np.array([frame.energy for frame in frames])
    e0, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return tuple(float(e) for e in e0)


def describe_reference_energies(elements: tuple[int, ...], e0: tuple[float, ...]) -> str:
    """``'H -1.234, C -5.678'`` [eV]."""
    return ", ".join(f"{chemical_symbols[z]} {e:.4f}" for z, e in zip(elements, e0))


def average_neighbors(frames: list[Frame], cutoff: float, sample: int = 500) -> float:
    """Mean number of neighbours within ``cutoff`` [Å] per atom, over up to ``sample`` evenly spaced frames."""
    step = max(1, len(frames) // sample)
    chosen = [f.atoms for f in frames[::step]]
    systems = SystemBatch.from_atoms(chosen, dtype=torch.float64, device="cpu")
    edges, _ = radius_graph(systems.positions, systems.cell, systems.pbc, systems.batch, cutoff)
    return edges.shape[1] / max(1, systems.positions.shape[0])


def average_atoms(frames: list[Frame]) -> float:
    """Mean number of atoms per frame."""
    return float(np.mean([len(f.atoms) for f in frames]))
