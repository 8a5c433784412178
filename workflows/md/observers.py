"""What a run records as it goes: samples and log lines, trajectory frames, a progress bar."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np
from ase import Atoms, units
from ase.io import Trajectory, write
from ase.md.md import MolecularDynamics

TRAJECTORY_SUFFIXES = (".traj", ".xyz", ".extxyz")


@dataclass
class MDSamples:
    """The state of a run at its sampled steps, one entry per sample.

    Attributes:
        time_ps: simulated time [ps].
        potential_eV, kinetic_eV: potential and kinetic energy [eV].
        temperature_K: instantaneous temperature 2 E_kin / (n_dof k_B) [K], n_dof = 3N less
            what constraints remove (ASE's ``Atoms.get_temperature``).
        pressure_GPa: -tr(σ)/3 with the kinetic (ideal-gas) term included [GPa]; empty when the
            system has no pressure (not periodic along all three axes, or no stress).
        volume_A3: cell volume [Å³]; empty unless the run is NPT.
    """

    time_ps: list[float] = field(default_factory=list)
    potential_eV: list[float] = field(default_factory=list)
    kinetic_eV: list[float] = field(default_factory=list)
    temperature_K: list[float] = field(default_factory=list)
    pressure_GPa: list[float] = field(default_factory=list)
    volume_A3: list[float] = field(default_factory=list)

    @property
    def total_eV(self) -> np.ndarray:
        """E_pot + E_kin at each sample, shape (n_samples,) [eV]."""
        return np.add(self.potential_eV, self.kinetic_eV)


class MDRecorder:
    """An observer that samples ``atoms`` into :class:`MDSamples` and writes each sample as a log line.

    Log columns (whitespace-separated, a ``#`` header; ASE's ``MDLogger`` order): time [ps],
    E_tot, E_pot, E_kin [eV], T [K], then P [GPa] when ``pressure`` and V [Å³] when ``volume``.
    Every line is flushed as it is written, so a long run can be followed (``tail -f``).
    """

    def __init__(self, dyn: MolecularDynamics, atoms: Atoms, logfile: str | Path | None, *,
                 pressure: bool, volume: bool) -> None:
        self.dyn, self.atoms, self.pressure, self.volume = dyn, atoms, pressure, volume
        self.samples = MDSamples()
        self._log: TextIO | None = None
        if logfile is not None:
            self._log = sys.stdout if str(logfile) == "-" else open(logfile, "w")  # noqa: SIM115 (closed in close)
            header = f"# {'time[ps]':>10} {'Etot[eV]':>15} {'Epot[eV]':>15} {'Ekin[eV]':>13} {'T[K]':>9}"
            header += f" {'P[GPa]':>10}" * pressure + f" {'V[A^3]':>12}" * volume
            print(header, file=self._log, flush=True)

    def __call__(self) -> None:
        """Take one sample (and write its log line)."""
        a, s = self.atoms, self.samples
        s.time_ps.append(self.dyn.get_time() / (1000 * units.fs))
        s.potential_eV.append(float(a.get_potential_energy()))
        s.kinetic_eV.append(float(a.get_kinetic_energy()))
        s.temperature_K.append(float(a.get_temperature()))
        line = (f"  {s.time_ps[-1]:10.4f} {s.potential_eV[-1] + s.kinetic_eV[-1]:15.6f} {s.potential_eV[-1]:15.6f} "
                f"{s.kinetic_eV[-1]:13.6f} {s.temperature_K[-1]:9.2f}")
        if self.pressure:
            stress = a.get_stress(voigt=False, include_ideal_gas=True)
            s.pressure_GPa.append(float(-np.trace(stress) / 3 / units.GPa))
            line += f" {s.pressure_GPa[-1]:10.5f}"
        if self.volume:
            s.volume_A3.append(float(a.get_volume()))
            line += f" {s.volume_A3[-1]:12.4f}"
        if self._log is not None:
            print(line, file=self._log, flush=True)

    def close(self) -> None:
        """Close the log file (never the screen)."""
        if self._log is not None and self._log is not sys.stdout:
            self._log.close()


def trajectory_format(path: str | Path) -> str:
    """``'traj'`` (ASE's format) or ``'extxyz'``, by the suffix of ``path``.

    Raises:
        ValueError: a suffix other than ``.traj``, ``.xyz`` or ``.extxyz``.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in TRAJECTORY_SUFFIXES:
        raise ValueError(f"trajectory: {str(path)!r} must end in one of {TRAJECTORY_SUFFIXES}")
    return "traj" if suffix == ".traj" else "extxyz"


class TrajectoryWriter:
    """An observer that appends the current frame of ``atoms`` to ``path``, flushed at once.

    ``.traj``: ASE's trajectory format (positions, momenta, cell, and the calculator's energy,
    forces and stress); ``.xyz`` or ``.extxyz``: extended XYZ with the same, one frame after another.

    Raises:
        ValueError: another suffix.
    """

    def __init__(self, path: str | Path, atoms: Atoms) -> None:
        self.atoms = atoms
        if trajectory_format(path) == "traj":
            self._traj: Trajectory | None = Trajectory(str(path), "w", atoms)
            self._xyz: TextIO | None = None
        else:
            self._traj, self._xyz = None, open(path, "w")  # noqa: SIM115 (closed in close)

    def __call__(self) -> None:
        """Write one frame."""
        if self._traj is not None:
            self._traj.write()
        else:
            write(self._xyz, self.atoms, format="extxyz")
            self._xyz.flush()

    def close(self) -> None:
        """Close the file."""
        (self._traj or self._xyz).close()
