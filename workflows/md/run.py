"""``run_md``: molecular dynamics through any ASE calculator, logging and writing as it goes."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from tqdm.auto import tqdm

from potentials.base import check_number

from .ensembles import LABELS, NPT_ENSEMBLES, canonical_ensemble, check_ensemble, has_pressure, make_integrator
from .observers import MDRecorder, TrajectoryWriter, trajectory_format
from .plot import plot_md
from .summary import MDSummary, summarize


def run_md(
    atoms: Atoms,
    *,
    steps: int,
    timestep_fs: float = 2.0,
    temperature_K: float = 300.0,
    ensemble: str = "nve",
    pressure_GPa: float | None = None,
    friction_per_fs: float = 0.01,
    tdamp_fs: float = 100.0,
    pdamp_fs: float = 1000.0,
    compressibility_per_GPa: float | None = None,
    anisotropic: bool = False,
    seed: int = 0,
    trajectory: str | Path | None = None,
    logfile: str | Path | None = None,
    plot: str | Path | None = None,
    interval: int = 10,
    progress: bool = False,
) -> MDSummary:
    """Run MD on ``atoms`` with the calculator already attached to it; ``atoms`` is moved in place.

    Velocities are drawn from Maxwell-Boltzmann at ``temperature_K`` with the random generator
    seeded by ``seed``, and the total momentum is removed, unless ``atoms`` already carries
    momenta (to continue a run). Every ``interval`` steps, and after the last, the run is sampled
    (a log line: time, energies, temperature, and pressure for a system periodic along all three
    axes, volume under NPT) and a frame is written to ``trajectory``, each flushed at once; the
    summary's averages and the ``plot`` are made from the same samples.

    Args:
        atoms: the system, N atoms, with a calculator (forces in eV/Å; stress in eV/Å³ for NPT).
        steps: integration steps.
        timestep_fs: time step [fs].
        temperature_K: initial temperature and the thermostat's target [K] (NVE: initial only).
        ensemble: ``'nve'`` (velocity Verlet), ``'langevin'`` (or ``'nvt'``), ``'bussi'``, ``'nhc'``
            (Nosé-Hoover chain), ``'npt-mtk'`` or ``'npt-berendsen'``; see
            :mod:`workflows.md.ensembles` for the methods and their references.
        pressure_GPa: the barostat's target pressure [GPa]; required by NPT, refused otherwise.
        friction_per_fs: Langevin friction [1/fs].
        tdamp_fs: thermostat time constant of Bussi, Nosé-Hoover chain, MTK and Berendsen [fs].
        pdamp_fs: barostat time constant of MTK and Berendsen [fs].
        compressibility_per_GPa: Berendsen's compressibility [1/GPa]; None: estimated at the start.
        anisotropic: NPT: let the cell shape change too (see :func:`make_integrator`).
        seed: seeds the velocities and the Langevin and Bussi noise (independent streams).
        trajectory: a ``.traj``, ``.xyz`` or ``.extxyz`` file for frames, or None.
        logfile: a file for the log, ``'-'`` for the screen, or None.
        plot: a PNG file for :func:`workflows.md.plot.plot_md`, or None.
        interval: steps between samples [steps].
        progress: show a tqdm progress bar on stderr.

    Returns:
        the :class:`MDSummary` (NVE: with the energy drift in eV/atom/ps).

    Raises:
        ValueError: no atoms, no calculator, an unknown ensemble, a number out of its range (named
            with its unit), a file in a folder that does not exist or a trajectory of another
            format, or an ensemble the system cannot run (see :func:`check_ensemble`: NPT needs a
            pressure and a system periodic along all three axes; a thermostat other than Langevin
            needs a temperature above 0 K).
    """
    steps = check_number(steps, "steps", int, minimum=0)
    timestep_fs = check_number(timestep_fs, "timestep_fs", float, minimum=0, inclusive=False, unit="fs")
    temperature_K = check_number(temperature_K, "temperature_K", float, minimum=0, unit="K")
    friction_per_fs = check_number(friction_per_fs, "friction_per_fs", float, minimum=0, unit="1/fs")
    tdamp_fs = check_number(tdamp_fs, "tdamp_fs", float, minimum=0, inclusive=False, unit="fs")
    pdamp_fs = check_number(pdamp_fs, "pdamp_fs", float, minimum=0, inclusive=False, unit="fs")
    if pressure_GPa is not None:
        pressure_GPa = check_number(pressure_GPa, "pressure_GPa", float, unit="GPa")
    if compressibility_per_GPa is not None:
        compressibility_per_GPa = check_number(compressibility_per_GPa, "compressibility_per_GPa", float,
                                               minimum=0, inclusive=False, unit="1/GPa")
    anisotropic = check_number(anisotropic, "anisotropic", bool)
    seed = check_number(seed, "seed", int)
    interval = check_number(interval, "interval", int, minimum=1, unit="steps")
    for name, path in (("trajectory", trajectory), ("logfile", logfile), ("plot", plot)):
        if path is not None and str(path) != "-" and not Path(path).absolute().parent.is_dir():
            raise ValueError(f"{name}: the folder of {str(path)!r} does not exist")
    if trajectory is not None:
        trajectory_format(trajectory)
    ensemble = canonical_ensemble(ensemble)
    if len(atoms) == 0:
        raise ValueError("atoms: no atoms to run MD on")
    if atoms.calc is None:
        raise ValueError("attach a calculator to atoms before running MD")
    check_ensemble(atoms, ensemble, temperature_K, pressure_GPa)

    velocity_rng, thermostat_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    if not np.any(atoms.get_momenta()):
        thermalize_momenta(atoms, temperature_K, rng=velocity_rng)
        # one atom, or no motion at all (0 K), has no temperature left to restore once at rest
        Stationary(atoms, preserve_temperature=len(atoms) > 1 and temperature_K > 0)
    dyn = make_integrator(
        atoms, ensemble, timestep_fs=timestep_fs, temperature_K=temperature_K, pressure_GPa=pressure_GPa,
        friction_per_fs=friction_per_fs, tdamp_fs=tdamp_fs, pdamp_fs=pdamp_fs,
        compressibility_per_GPa=compressibility_per_GPa, anisotropic=anisotropic, rng=thermostat_rng,
    )
    with contextlib.ExitStack() as stack:
        recorder = MDRecorder(dyn, atoms, logfile, pressure=has_pressure(atoms), volume=ensemble in NPT_ENSEMBLES)
        stack.callback(recorder.close)
        observers = [recorder]
        if trajectory is not None:
            writer = TrajectoryWriter(trajectory, atoms)
            stack.callback(writer.close)
            observers.append(writer)
        for observer in observers:
            dyn.attach(observer, interval=interval)
        bar = stack.enter_context(tqdm(total=steps, unit="step", disable=not progress, desc=LABELS[ensemble]))
        dyn.attach(lambda: bar.update(dyn.nsteps - bar.n), interval=1)
        start = time.perf_counter()
        dyn.run(steps)
        elapsed = time.perf_counter() - start
        if steps % interval:  # the last state too
            for observer in observers:
                observer()
    samples = recorder.samples
    target_t = None if ensemble == "nve" else temperature_K
    if plot is not None:
        plot = plot_md(samples, plot, n_atoms=len(atoms), target_temperature_K=target_t,
                       target_pressure_GPa=pressure_GPa,
                       title=f"{LABELS[ensemble]} MD of {atoms.get_chemical_formula()}, {timestep_fs:g} fs steps")
    return summarize(
        samples, ensemble=ensemble, steps=steps, n_atoms=len(atoms), timestep_fs=timestep_fs,
        seconds_per_step=elapsed / max(steps, 1), target_temperature_K=target_t, target_pressure_GPa=pressure_GPa,
        logfile=None if logfile is None or str(logfile) == "-" else logfile, trajectory=trajectory, plot=plot,
    )
