"""The training loss and the validation metrics, from one comparison of predictions with labels.

Every quantity is a *sum* over the frames of a batch, with its count, so that batches (and the
shards of one global batch on several processes) add up exactly: the loss of a global batch is

    L = w_E sum_s rho((E_s - E_s^ref) / N_s) / n_systems
      + w_F sum_{i free, a} rho(F_ia - F_ia^ref) / n_force_components
      + w_S sum_{s with stress, ab} rho(sigma_sab - sigma_sab^ref) / n_stress_components

with rho(x) = x^2 ('mse') or Huber's function, whichever process holds which frames.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor

from equicalc import Prediction, SystemBatch

from .config import LossSection
from .frames import Frame


@dataclass
class Targets:
    """The labels of a batch as tensors (float64).

    Attributes:
        energy: ``(n_systems,)`` [eV]; n_atoms: ``(n_systems,)``.
        forces: ``(n_atoms, 3)`` [eV/Å]; free: ``(n_atoms,)`` bool (atoms that enter force terms).
        stress: ``(n_systems, 3, 3)`` [eV/Å³], zeros where absent; has_stress: ``(n_systems,)`` bool.
    """

    energy: Tensor
    n_atoms: Tensor
    forces: Tensor
    free: Tensor
    stress: Tensor
    has_stress: Tensor

    @classmethod
    def of(cls, frames: list[Frame], device: torch.device, free_atoms_only: bool) -> Targets:
        """Stack the labels of ``frames`` (forces of all atoms enter when not ``free_atoms_only``)."""
        def t(x: object, dtype: torch.dtype = torch.float64) -> Tensor:
            return torch.as_tensor(x, dtype=dtype, device=device)

        forces = torch.cat([t(f.forces) for f in frames]) if frames else t([]).reshape(0, 3)
        free = torch.cat([t(f.free if free_atoms_only else np.ones_like(f.free), torch.bool) for f in frames]) \
            if frames else t([], torch.bool)
        return cls(
            energy=t([f.energy for f in frames]),
            n_atoms=t([len(f.atoms) for f in frames]),
            forces=forces,
            free=free,
            stress=t(np.array([f.stress if f.stress is not None else np.zeros((3, 3)) for f in frames])).reshape(-1, 3, 3),
            has_stress=t([f.stress is not None for f in frames], torch.bool),
        )

    def counts(self) -> Tensor:
        """``(3,)`` float64: systems, free force components, stress components."""
        return torch.stack([
            self.energy.new_tensor(float(self.energy.numel())),
            3.0 * self.free.sum().to(torch.float64),
            9.0 * self.has_stress.sum().to(torch.float64),
        ])


def batch_of(frames: list[Frame], device: torch.device) -> SystemBatch:
    """The frames as a float64 :class:`SystemBatch` on ``device``."""
    return SystemBatch.from_atoms([f.atoms for f in frames], dtype=torch.float64, device=device)


@dataclass
class ErrorSums:
    """Sums of errors over some frames, additive over batches and processes.

    ``rho_*`` (with autograd, for the loss) are sums of rho(error); the rest are detached sums for metrics.
    """

    rho_energy: Tensor          # sum_s rho(dE_s / N_s)
    rho_forces: Tensor          # sum over free components of rho(dF_ia)
    rho_stress: Tensor          # sum over stress components of rho(d sigma)
    energy_abs: Tensor          # sum_s |dE_s| / N_s  [eV/atom]
    forces_abs: Tensor          # sum |dF_ia| over free components [eV/Å]
    forces_cos: Tensor          # sum over free atoms with a non-zero reference force of cos(F, F_ref)
    n_cos: Tensor
    stress_abs: Tensor          # sum |d sigma| [eV/Å³]
    counts: Tensor              # (3,) systems, force components, stress components

    @classmethod
    def width(cls) -> int:
        """Length of :meth:`detached`: one entry per sum, three counts."""
        return len(fields(cls)) - 1 + 3

    def detached(self) -> Tensor:
        """All sums as one float64 vector (for all-reduce and accumulation)."""
        return torch.cat([torch.stack([getattr(self, f.name).detach().to(torch.float64).reshape(())
                                       for f in fields(self) if f.name != "counts"]), self.counts.detach()])

    def loss(self, weights: LossSection, global_counts: Tensor) -> Tensor:
        """The weighted loss of these frames, normalised by the counts of the whole global batch."""
        return loss_of(self.rho_energy, self.rho_forces, self.rho_stress, global_counts, weights)


def loss_of(rho_energy: Tensor, rho_forces: Tensor, rho_stress: Tensor, counts: Tensor, weights: LossSection) -> Tensor:
    """w_E rho_E / n_systems + w_F rho_F / n_force_components + w_S rho_S / n_stress_components (module docstring)."""
    counts = counts.clamp(min=1.0)
    return (weights.energy_weight * rho_energy / counts[0] + weights.forces_weight * rho_forces / counts[1]
            + weights.stress_weight * rho_stress / counts[2])


def compare(prediction: Prediction, targets: Targets, weights: LossSection) -> ErrorSums:
    """Errors of ``prediction`` against ``targets`` (``weights`` gives rho: 'mse' or 'huber')."""
    def rho(x: Tensor) -> Tensor:
        if weights.kind == "huber":
            return torch.nn.functional.huber_loss(x, torch.zeros_like(x), reduction="sum", delta=weights.huber_delta)
        return x.square().sum()

    energy_error = (prediction.energy - targets.energy) / targets.n_atoms
    force_error = (prediction.forces.to(torch.float64) - targets.forces)[targets.free]
    zero = energy_error.new_zeros(())
    rho_stress, stress_abs = zero, zero
    if prediction.stress is not None and bool(targets.has_stress.any()):
        stress_error = (prediction.stress - targets.stress)[targets.has_stress]
        rho_stress, stress_abs = rho(stress_error), stress_error.detach().abs().sum()
    reference = targets.forces[targets.free]
    nonzero = reference.norm(dim=1) > 1e-12
    cosine = torch.nn.functional.cosine_similarity(
        prediction.forces.detach().to(torch.float64)[targets.free][nonzero], reference[nonzero], dim=1)
    return ErrorSums(
        rho_energy=rho(energy_error),
        rho_forces=rho(force_error),
        rho_stress=rho_stress,
        energy_abs=energy_error.detach().abs().sum(),
        forces_abs=force_error.detach().abs().sum(),
        forces_cos=cosine.sum(),
        n_cos=energy_error.new_tensor(float(nonzero.sum())),
        stress_abs=stress_abs,
        counts=targets.counts(),
    )


def metrics(sums: Tensor, weights: LossSection) -> dict[str, float]:
    """Mean metrics from accumulated :meth:`ErrorSums.detached` vectors: the loss, energy MAE
    [meV/atom], force MAE [meV/Å], mean force cosine, stress MAE [meV/Å³] (NaN without stress)."""
    *_, energy_abs, forces_abs, cos, n_cos, stress_abs, n_sys, n_force, n_stress = sums.tolist()

    def mean(total: float, n: float) -> float:
        return total / n if n > 0 else float("nan")

    return {
        "loss": float(loss_of(sums[0], sums[1], sums[2], sums[-3:], weights)),
        "energy_mae": 1e3 * mean(energy_abs, n_sys),
        "forces_mae": 1e3 * mean(forces_abs, n_force),
        "forces_cos": mean(cos, n_cos),
        "stress_mae": 1e3 * mean(stress_abs, n_stress),
    }
