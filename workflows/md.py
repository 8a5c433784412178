"""Molecular dynamics through any ASE calculator, logging and writing the trajectory as it goes."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.io import Trajectory
from ase.md import MDLogger
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary
from ase.md.verlet import VelocityVerlet

from potentials.base import check_number

ENSEMBLES = ("nve", "nvt")


@dataclass
class MDSummary:
    """What a run did.

    Attributes:
        steps: integration steps taken.
        n_atoms: atoms in the system.
        ensemble: ``'nve'`` or ``'nvt'``.
        temperature_K: instantaneous temperature at the first and last step [K].
        total_energy_eV: total energy at the first and last step [eV].
        max_drift_eV_per_atom: largest |E_tot(t) - E_tot(0)| / N over the run [eV/atom].
        seconds_per_step: wall time per step [s].
    """

    steps: int
    n_atoms: int
    ensemble: str
    temperature_K: tuple[float, float]
    total_energy_eV: tuple[float, float]
    max_drift_eV_per_atom: float
    seconds_per_step: float


def run_md(
    atoms: Atoms,
    *,
    steps: int,
    timestep_fs: float = 2.0,
    temperature_K: float = 300.0,
    ensemble: str = "nve",
    friction_per_fs: float = 0.01,
    seed: int = 0,
    trajectory: str | Path | None = None,
    logfile: str | Path | None = None,
    interval: int = 10,
) -> MDSummary:
    """Run MD on ``atoms`` with the calculator already attached to it.

    Velocities are drawn from Maxwell-Boltzmann at ``temperature_K`` (centre of mass at rest)
    unless ``atoms`` already carries momenta. ``nve`` is velocity Verlet; ``nvt`` is Langevin
    with ``friction_per_fs``. Every ``interval`` steps a frame goes to ``trajectory`` and a line
    to ``logfile`` as the run proceeds (``logfile='-'``: the screen).

    Raises:
        ValueError: no atoms, no calculator, an unknown ensemble, a number out of its range (named
            with its unit), or a trajectory or log file in a folder that does not exist.
    """
    steps = check_number(steps, "steps", int, minimum=0)
    timestep_fs = check_number(timestep_fs, "timestep_fs", float, minimum=0, inclusive=False, unit="fs")
    temperature_K = check_number(temperature_K, "temperature_K", float, minimum=0, unit="K")
    friction_per_fs = check_number(friction_per_fs, "friction_per_fs", float, minimum=0, unit="1/fs")
    seed = check_number(seed, "seed", int)
    interval = check_number(interval, "interval", int, minimum=1, unit="steps")
    for name, path in (("trajectory", trajectory), ("logfile", logfile)):
        if path is not None and str(path) != "-" and not Path(path).absolute().parent.is_dir():
            raise ValueError(f"{name}: the folder of {str(path)!r} does not exist")
    if len(atoms) == 0:
        raise ValueError("atoms: no atoms to run MD on")
    if ensemble not in ENSEMBLES:
        raise ValueError(f"ensemble must be one of {ENSEMBLES}, got {ensemble!r}")
    if atoms.calc is None:
        raise ValueError("attach a calculator to atoms before running MD")
    if not np.any(atoms.get_momenta()):
        # Maxwell-Boltzmann: each momentum component ~ N(0, m k_B T)
        masses = atoms.get_masses()[:, None]
        sigma = np.sqrt(masses * units.kB * temperature_K)
        atoms.set_momenta(np.random.default_rng(seed).normal(size=(len(atoms), 3)) * sigma)
        # one atom, or no motion at all (0 K), has no temperature left to restore once at rest
        Stationary(atoms, preserve_temperature=len(atoms) > 1 and temperature_K > 0)
    dt = timestep_fs * units.fs
    if ensemble == "nve":
        dyn = VelocityVerlet(atoms, timestep=dt)
    else:
        dyn = Langevin(
            atoms, timestep=dt, temperature_K=temperature_K, friction=friction_per_fs / units.fs,
            rng=np.random.default_rng(seed),
            **({} if len(atoms) > 1 else {"fixcm": False}),  # one atom held at rest would not be thermostatted
        )
    if trajectory is not None:
        traj = Trajectory(str(trajectory), "w", atoms)
        dyn.attach(traj.write, interval=interval)
    if logfile is not None:
        dyn.attach(MDLogger(dyn, atoms, str(logfile), header=True, mode="w"), interval=interval)

    n = len(atoms)
    energies: list[float] = []
    dyn.attach(lambda: energies.append(atoms.get_total_energy()), interval=1)
    t_start = atoms.get_temperature()
    start = time.perf_counter()
    dyn.run(steps)
    elapsed = time.perf_counter() - start
    if trajectory is not None:
        traj.close()
    e = np.array(energies)
    return MDSummary(
        steps=steps,
        n_atoms=n,
        ensemble=ensemble,
        temperature_K=(float(t_start), float(atoms.get_temperature())),
        total_energy_eV=(float(e[0]), float(e[-1])),
        max_drift_eV_per_atom=float(np.abs(e - e[0]).max() / n),
        seconds_per_step=elapsed / max(steps, 1),
    )
