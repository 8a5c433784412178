"""Energy, forces and stress of a batch of systems in one forward and one backward pass."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from potentials import AtomGraph, Potential

from .batch import SystemBatch, symbol
from .neighbors import radius_graph


@dataclass
class Prediction:
    """Model outputs for a batch.

    Attributes:
        energy: ``(n_systems,)`` total energies [eV].
        energies: ``(n_atoms,)`` per-atom energies [eV].
        forces: ``(n_atoms, 3)`` [eV/Å], or None when not asked for.
        stress: ``(n_systems, 3, 3)`` (1/V) dE/d(strain) [eV/Å³] (ASE's sign: tensile positive),
            or None when not asked for; NaN for systems with no periodic axis or no 3-D cell.
    """

    energy: Tensor
    energies: Tensor
    forces: Tensor | None = None
    stress: Tensor | None = None


#: atoms closer than this are taken to sit at one place [Å]
COINCIDENCE_TOLERANCE = 1e-6


def _refuse_coincident_atoms(graph: AtomGraph, edge_index: Tensor, shifts: Tensor) -> None:
    """Raise ``ValueError`` naming the first pair of atoms (or an atom and a periodic image of another)
    closer than ``COINCIDENCE_TOLERANCE``: no model has a finite, meaningful energy there."""
    close = torch.nonzero(graph.edge_lengths.detach() < COINCIDENCE_TOLERANCE).flatten()
    if close.numel() == 0:
        return
    e = int(close[0])
    i, j = sorted(edge_index[:, e].tolist())
    system = int(graph.batch[i])
    first = int(torch.searchsorted(graph.batch, system))
    z = graph.numbers.tolist()
    where = f"system {system}: " if graph.n_systems > 1 else ""
    shift = shifts[e].tolist()
    image = f" through a periodic image (cell shift {tuple(shift)})" if any(shift) else ""
    raise ValueError(
        f"{where}atoms {i - first} ({symbol(z[i])}) and {j - first} ({symbol(z[j])}) coincide{image}: "
        f"closer than {COINCIDENCE_TOLERANCE} Å"
    )


def has_stress(cell: Tensor, pbc: Tensor) -> Tensor:
    """``(n_systems,)`` bool: stress is defined (some axis periodic and a cell of non-zero volume)."""
    return pbc.any(dim=-1) & (torch.linalg.det(cell).abs() > 1e-12)


def predict(
    model: Potential,
    systems: SystemBatch,
    *,
    forces: bool = True,
    stress: bool = True,
    create_graph: bool = False,
) -> Prediction:
    """Evaluate ``model`` on ``systems``.

    The graph has the model's cutoff and neighbour cap. Forces are -dE/dr by autograd (or the
    model's direct head, for ``direct_forces`` models); stress is (1/V) dE/de for a symmetric strain
    e applied to positions and cell together (r -> r (1 + e), cell -> cell (1 + e)). Both come from
    the same backward pass. ``create_graph`` keeps the graph of the derivatives, for training on forces.
    Derivatives are computed under ``torch.inference_mode()`` too (outside it, on copies of the inputs).

    The network runs in ``model.dtype``; geometry (neighbour search, edge vectors, derivatives with
    respect to positions and strain, the energy sum) in the dtype of ``systems``, which may be
    higher: float64 systems with a float32 model give edge vectors rounded once from exact
    differences and energies summed in float64.

    Raises:
        ValueError: an element the model does not know, atoms that coincide (also through a
            periodic image), non-finite positions or cell, a degenerate periodic cell.
    """
    systems.check_elements(model.elements, str(model.metadata.get("name", model.architecture)))
    autograd_forces = forces and not model.direct_forces
    inference = torch.is_inference_mode_enabled() or systems.positions.is_inference() or systems.cell.is_inference()
    if (autograd_forces or stress or create_graph) and inference:
        # inference mode switches autograd off, which would leave every derivative zero: evaluate
        # outside it, on copies of the inputs made there (inference tensors cannot enter autograd)
        with torch.inference_mode(False):
            return predict(model, systems.clone(), forces=forces, stress=stress, create_graph=create_graph)
    edge_index, shifts = radius_graph(
        systems.positions, systems.cell, systems.pbc, systems.batch, model.cutoff,
        max_neighbors=model.config.max_neighbors, strict=model.config.enforce_max_neighbors_strictly,
    )
    positions = systems.positions.detach().requires_grad_(autograd_forces)
    strain = torch.zeros_like(systems.cell).requires_grad_(stress)
    deformation = torch.eye(3, dtype=strain.dtype, device=strain.device) + 0.5 * (strain + strain.transpose(1, 2))
    graph = AtomGraph(
        positions=torch.einsum("na,nab->nb", positions, deformation[systems.batch]),
        numbers=systems.numbers,
        cell=systems.cell @ deformation,
        pbc=systems.pbc,
        batch=systems.batch,
        edge_index=edge_index,
        shifts=shifts.to(systems.positions.dtype),
        dtype=model.dtype,
    )
    _refuse_coincident_atoms(graph, edge_index, shifts)
    # gradients only where derivatives are asked for, or for a model being trained
    with torch.set_grad_enabled(autograd_forces or stress or create_graph or model.training):
        out = model(graph)
    energies = out["energies"]
    energy = graph.system_sum(energies.to(systems.positions.dtype))
    result = Prediction(energy=energy, energies=energies)
    if forces and model.direct_forces:
        result.forces = out["forces"]
    inputs = [t for t, wanted in ((positions, autograd_forces), (strain, stress)) if wanted]
    if inputs:
        if energy.requires_grad:  # zero gradients where E does not depend on an input
            grads = torch.autograd.grad(energy.sum(), inputs, create_graph=create_graph, materialize_grads=True)
        else:  # no edges at all: E is a sum of reference energies
            grads = [torch.zeros_like(t) for t in inputs]
        if autograd_forces:
            result.forces = -grads[0]
        if stress:
            volume = torch.linalg.det(systems.cell).abs()
            defined = has_stress(systems.cell, systems.pbc)
            result.stress = torch.where(defined[:, None, None], grads[-1] / volume[:, None, None], torch.nan)
    return result
