"""L-BFGS on many systems at once, step for step ASE's ``ase.optimize.LBFGS``.

Nocedal, "Updating quasi-Newton matrices with limited storage", Math. Comp. 35, 773 (1980): the
two-loop recursion over the last ``memory`` position and gradient differences of each system, from
a diagonal initial inverse Hessian 1/``alpha``, in the form of ASE 3.29's ``LBFGS``
(``use_line_search=False``): the step is scaled down so that no atom of the system moves more than
``maxstep``, then multiplied by ``damping``.

The histories of all systems share one ring buffer of ``memory`` slots over the batch's atom rows;
every step writes one slot for every system (zeros for a system on its first step, which has no
difference yet). Since all systems in the batch step together, a system's differences sit in the
newest slots, newest first, and the older slots of its rows are zero, which adds exactly nothing to
either loop (``rho = 0``). Each system therefore gets ASE's recursion, with ASE's operations in its
order, in float64: its trajectory equals ASE's to rounding error (dot products sum in another order).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from potentials.base import check_number

from .optimizer import BatchedOptimizer, Field, system_dot, system_max


@dataclass(frozen=True)
class LBFGSParameters:
    """ASE's ``LBFGS`` parameters, with its defaults (names as ASE's keyword arguments).

    Attributes:
        maxstep: largest displacement of one atom in one step [Å] (ASE refuses more than 1 Å).
        memory: number of past steps whose differences are kept.
        damping: factor on every step.
        alpha: initial Hessian guess [eV/Å²] (the inverse Hessian starts as 1/alpha).
    """

    maxstep: float = 0.2
    memory: int = 100
    damping: float = 1.0
    alpha: float = 70.0

    def __post_init__(self) -> None:
        check_number(self.maxstep, "LBFGS maxstep", float, minimum=0, inclusive=False, unit="Å")
        if self.maxstep > 1.0:
            raise ValueError(f"LBFGS maxstep must be at most 1 Å (ASE's limit), got {self.maxstep!r}")
        check_number(self.memory, "LBFGS memory", int, minimum=1)
        check_number(self.damping, "LBFGS damping", float, minimum=0, inclusive=False)
        check_number(self.alpha, "LBFGS alpha", float, minimum=0, inclusive=False, unit="eV/Å²")


class BatchedLBFGS(BatchedOptimizer):
    """ASE's LBFGS for every system of a batch (see the module docstring)."""

    def __init__(self, parameters: LBFGSParameters, device: torch.device) -> None:
        self.parameters = parameters
        self.slot = -1  # the ring-buffer slot written last
        super().__init__(device)

    def fields(self) -> dict[str, Field]:
        m = self.parameters.memory
        return {
            "s": Field("atom", (m, None, 3), 0.0, torch.float64),  # position differences [Å]
            "y": Field("atom", (m, None, 3), 0.0, torch.float64),  # gradient differences [eV/Å]
            "rho": Field("system", (m, None), 0.0, torch.float64),  # 1 / (y . s) [Å²/eV]
            "r0": Field("atom", (None, 3), 0.0, torch.float64),  # positions of the last step [Å]
            "f0": Field("atom", (None, 3), 0.0, torch.float64),  # forces of the last step [eV/Å]
            "iteration": Field("system", (None,), 0, torch.long),  # steps taken
            "iteration_host": Field("system", (None,), 0, torch.long, host=True),  # the same, on the host
        }

    def step(self, positions: Tensor, forces: Tensor, batch: Tensor, n_systems: int) -> Tensor:
        p = self.parameters
        m = p.memory
        # the newest differences (ASE's update(); none on a system's first step)
        started = self.iteration > 0
        s0 = torch.where(started[batch, None], positions - self.r0, 0.0)
        y0 = torch.where(started[batch, None], -forces - -self.f0, 0.0)
        rho0 = torch.where(started, 1.0 / system_dot(y0, s0, batch, n_systems), 0.0)
        self.slot = (self.slot + 1) % m
        self.s[self.slot], self.y[self.slot], self.rho[self.slot] = s0, y0, rho0

        # two-loop recursion on the gradient over each system's differences, newest first
        # (ASE's compute_step()); the slots older than a system's history hold zeros
        depth = min(m, int(self.iteration_host.max(initial=0)))
        slots = [(self.slot - k) % m for k in range(depth)]
        q = -forces
        a = []
        for k in slots:
            a_k = self.rho[k] * system_dot(self.s[k], q, batch, n_systems)
            q = q - a_k[batch, None] * self.y[k]
            a.append(a_k)
        z = (1.0 / p.alpha) * q
        for k, a_k in zip(reversed(slots), reversed(a)):
            b = self.rho[k] * system_dot(self.y[k], z, batch, n_systems)
            z = z + self.s[k] * (a_k - b)[batch, None]
        step = -z

        # ASE's determine_step(): no atom of the system moves more than maxstep
        longest = system_max(torch.linalg.vector_norm(step, dim=1), batch, n_systems)
        too_long = longest >= p.maxstep
        step = torch.where(too_long[batch, None], step * (p.maxstep / longest)[batch, None], step)
        self.r0, self.f0 = positions, forces
        self.iteration = self.iteration + 1
        self.iteration_host = self.iteration_host + 1
        return step * p.damping
