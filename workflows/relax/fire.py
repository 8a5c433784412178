"""FIRE on many systems at once, step for step ASE's ``ase.optimize.FIRE``.

Bitzek, Koskinen, Gähler, Moseler and Gumbsch, "Structural relaxation made simple", Phys. Rev.
Lett. 97, 170201 (2006), in the form of ASE 3.29's ``FIRE`` (``downhill_check=False``): each
system keeps its own velocity, time step ``dt``, mixing parameter ``a`` and count of downhill
steps, and its displacement is scaled down when its norm, over all of the system's coordinates,
exceeds ``maxstep``. Each operation is ASE's, in its order, in float64, so a system relaxed in a
batch follows ASE's trajectory to rounding error (dot products sum in another order).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from potentials.base import check_number

from .optimizer import BatchedOptimizer, Field, system_dot


@dataclass(frozen=True)
class FIREParameters:
    """ASE's ``FIRE`` parameters, with its defaults (names as ASE's keyword arguments).

    Attributes:
        dt: initial time step [ASE's time unit, Å sqrt(amu/eV)].
        maxstep: largest norm of one step's displacement of a system, over all its coordinates [Å].
        dtmax: largest time step.
        Nmin: downhill steps before the time step may grow.
        finc, fdec: factors growing and shrinking the time step.
        astart: ``a`` after an uphill step; fa: factor shrinking ``a`` on downhill steps.
        a: initial mixing of velocity and force directions.
    """

    dt: float = 0.1
    maxstep: float = 0.2
    dtmax: float = 1.0
    Nmin: int = 5
    finc: float = 1.1
    fdec: float = 0.5
    astart: float = 0.1
    fa: float = 0.99
    a: float = 0.1

    def __post_init__(self) -> None:
        for name in ("dt", "maxstep", "dtmax", "finc", "fdec", "fa"):
            check_number(getattr(self, name), f"FIRE {name}", float, minimum=0, inclusive=False)
        for name in ("astart", "a"):
            check_number(getattr(self, name), f"FIRE {name}", float, minimum=0, maximum=1)
        check_number(self.Nmin, "FIRE Nmin", int, minimum=0)


class BatchedFIRE(BatchedOptimizer):
    """ASE's FIRE for every system of a batch (see the module docstring)."""

    def __init__(self, parameters: FIREParameters, device: torch.device) -> None:
        self.parameters = parameters
        super().__init__(device)

    def fields(self) -> dict[str, Field]:
        p = self.parameters
        return {
            "velocity": Field("atom", (None, 3), 0.0, torch.float64),
            "dt": Field("system", (None,), p.dt, torch.float64),
            "a": Field("system", (None,), p.a, torch.float64),
            "downhill": Field("system", (None,), 0, torch.long),  # ASE's Nsteps
            "started": Field("system", (None,), False, torch.bool),  # ASE's "vel is not None"
        }

    def step(self, positions: Tensor, forces: Tensor, batch: Tensor, n_systems: int) -> Tensor:
        p = self.parameters
        v, f = self.velocity, forces
        vf = system_dot(f, v, batch, n_systems)
        grad2 = system_dot(f, f, batch, n_systems)
        vv = system_dot(v, v, batch, n_systems)
        downhill = self.started & (vf > 0.0)
        uphill = self.started & ~(vf > 0.0)
        # downhill: turn the velocity towards the force, keeping its norm
        mixed = (1.0 - self.a)[batch, None] * v + self.a[batch, None] * f / grad2.sqrt()[batch, None] * vv.sqrt()[
            batch, None
        ]
        v = torch.where(downhill[batch, None], mixed, torch.where(uphill[batch, None], v * 0.0, v))
        grow = downhill & (self.downhill > p.Nmin)
        self.dt = torch.where(grow, torch.clamp(self.dt * p.finc, max=p.dtmax), self.dt)
        self.a = torch.where(grow, self.a * p.fa, self.a)
        self.downhill = torch.where(downhill, self.downhill + 1, self.downhill)
        # uphill: stop, restart the mixing and halve the time step
        self.a = torch.where(uphill, torch.full_like(self.a, p.astart), self.a)
        self.dt = torch.where(uphill, self.dt * p.fdec, self.dt)
        self.downhill = torch.where(uphill, torch.zeros_like(self.downhill), self.downhill)
        self.started = torch.ones_like(self.started)

        dt = self.dt[batch, None]
        self.velocity = v + dt * f
        dr = dt * self.velocity
        norm = system_dot(dr, dr, batch, n_systems).sqrt()
        too_long = (norm > p.maxstep)[batch, None]
        return torch.where(too_long, p.maxstep * dr / norm[batch, None], dr)
