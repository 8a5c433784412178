"""What a relaxation reports, one structure at a time, whichever engine ran it."""

from __future__ import annotations

from dataclasses import dataclass, field

from ase import Atoms


@dataclass
class RelaxResult:
    """The outcome of relaxing one structure.

    Attributes:
        index: the structure's position in the input (results of the batched engine arrive in the
            order the structures converge, not in input order).
        atoms: the final structure, with a ``SinglePointCalculator`` holding its energy [eV] and the
            forces on all atoms [eV/Å] (fixed atoms included: ``get_forces(apply_constraint=False)``).
        converged: whether ``fmax`` fell below the requested threshold within the step limit.
        steps: optimizer steps taken.
        fmax: final largest force norm over the free atoms [eV/Å] (ASE's definition).
        energies: the energy at every evaluation, the initial one first [eV].
        fmaxes: ``fmax`` at every evaluation [eV/Å].
        error: why the relaxation stopped before converging (e.g. a non-finite energy), or None.
    """

    index: int
    atoms: Atoms
    converged: bool
    steps: int
    fmax: float
    energies: list[float] = field(default_factory=list)
    fmaxes: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def energy_change(self) -> float:
        """Final minus initial energy [eV]."""
        return self.energies[-1] - self.energies[0]
