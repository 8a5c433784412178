"""Lennard-Jones pair potential, the same form and cutoffs as ``ase.calculators.lj.LennardJones``.

It serves as an exact oracle for the whole stack (graphs, autograd forces and stress, batching):
with identical parameters it reproduces ASE's energies, forces and stress to rounding error.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .base import MAX_Z, Potential, PotentialConfig, require
from .graph import AtomGraph
from .nn import scatter_sum


@dataclass(kw_only=True)
class LennardJonesConfig(PotentialConfig):
    """LJ parameters, as ASE's.

    Attributes:
        sigma: zero-crossing distance; the minimum sits at 2^(1/6) sigma [Å].
        epsilon: well depth [eV].
        cutoff: pair cutoff r_c [Å]; ASE's default is 3 sigma.
        onset: start r_o of the smooth cutoff function [Å]; ASE's default is 0.66 r_c.
        smooth: False shifts each pair energy to vanish at r_c (forces jump there); True
            multiplies it by a switching function between r_o and r_c (continuous forces).
    """

    sigma: float = 1.0
    epsilon: float = 1.0
    cutoff: float = 3.0
    elements: tuple[int, ...] = tuple(range(1, MAX_Z + 1))
    onset: float | None = None
    smooth: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self, "sigma", float, minimum=0, inclusive=False, unit="Å")
        require(self, "epsilon", float, minimum=0, unit="eV")
        if self.onset is None:
            self.onset = 0.66 * self.cutoff
        require(self, "onset", float, minimum=0, maximum=self.cutoff, inclusive=False, unit="Å")
        require(self, "smooth", bool)


class LennardJones(Potential):
    r"""u(r) = 4 epsilon [(sigma/r)^12 - (sigma/r)^6] for every pair within the cutoff.

    With ``smooth=False`` the pair energy is shifted, u(r) - u(r_c); with ``smooth=True`` it is
    multiplied by the switching function of jax-md/HOOMD written in squared distances s = r^2:
    f(s) = (s_c - s)^2 (s_c + 2 s - 3 s_o) / (s_c - s_o)^3 for s_o < s < s_c, 1 below, 0 above.
    Each atom receives half of each of its pair energies (ASE's partition).
    """

    architecture = "lennard_jones"
    Config = LennardJonesConfig

    def forward(self, graph: AtomGraph) -> dict[str, Tensor]:
        cfg = self.config
        r2 = graph.edge_lengths.square()
        inside = r2 < cfg.cutoff**2
        c6 = torch.where(inside, (cfg.sigma**2 / r2) ** 3, torch.zeros_like(r2))
        pair = 4 * cfg.epsilon * (c6.square() - c6)
        if cfg.smooth:
            sc, so = cfg.cutoff**2, cfg.onset**2
            switch = (sc - r2).square() * (sc + 2 * r2 - 3 * so) / (sc - so) ** 3
            pair = pair * torch.where(r2 < so, torch.ones_like(r2), torch.where(inside, switch, torch.zeros_like(r2)))
        else:
            e_cut = 4 * cfg.epsilon * ((cfg.sigma / cfg.cutoff) ** 12 - (cfg.sigma / cfg.cutoff) ** 6)
            pair = torch.where(inside, pair - e_cut, pair)
        energies = 0.5 * scatter_sum(pair, graph.edge_index[0], graph.n_atoms)
        return {"energies": self.with_reference_energies(graph, energies)}
