"""The end-of-run summary of an MD run: temperature, pressure and volume over the second half,
and for NVE the energy drift."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ensembles import LABELS
from .observers import MDSamples


@dataclass
class MDSummary:
    """What a run did. Averages are over the samples of the second half of the run (the first
    half is taken as equilibration); standard deviations are of the samples themselves, not of
    their mean.

    Attributes:
        steps: integration steps taken.
        n_atoms: atoms in the system.
        ensemble: one of :data:`workflows.md.ENSEMBLES`.
        temperature_K: instantaneous temperature at the first and last sample [K].
        total_energy_eV: total energy at the first and last sample [eV].
        max_drift_eV_per_atom: the largest |E_tot(t) - E_tot(0)| / N over the samples [eV/atom].
        seconds_per_step: wall time per step [s].
        timestep_fs: the time step [fs].
        samples: sampled steps (every ``interval``, and the last).
        mean_temperature_K, std_temperature_K: over the second half [K].
        drift_eV_per_atom_per_ps: NVE only: the slope of a least-squares line through
            E_tot(t) / N over the whole run [eV/atom/ps]; None for other ensembles or one sample.
        mean_pressure_GPa, std_pressure_GPa: over the second half, kinetic term included [GPa];
            None without a pressure (see :class:`MDSamples`).
        mean_volume_A3, std_volume_A3: over the second half, NPT only [Å³]; None otherwise.
        target_temperature_K: the thermostat's target [K]; None for NVE.
        target_pressure_GPa: the barostat's target [GPa]; None unless NPT.
        logfile, trajectory, plot: the files written, or None.
    """

    steps: int
    n_atoms: int
    ensemble: str
    temperature_K: tuple[float, float]
    total_energy_eV: tuple[float, float]
    max_drift_eV_per_atom: float
    seconds_per_step: float
    timestep_fs: float
    samples: int
    mean_temperature_K: float
    std_temperature_K: float
    drift_eV_per_atom_per_ps: float | None = None
    mean_pressure_GPa: float | None = None
    std_pressure_GPa: float | None = None
    mean_volume_A3: float | None = None
    std_volume_A3: float | None = None
    target_temperature_K: float | None = None
    target_pressure_GPa: float | None = None
    logfile: str | None = None
    trajectory: str | None = None
    plot: str | None = None

    def report(self) -> str:
        """The summary as a few lines of text, units given."""
        lines = [f"{LABELS[self.ensemble]} MD: {self.steps} steps of {self.timestep_fs:g} fs "
                 f"({self.steps * self.timestep_fs / 1000:g} ps), {self.n_atoms} atoms"]
        target = f" (target {self.target_temperature_K:g} K)" if self.target_temperature_K is not None else ""
        lines.append(f"temperature {self.temperature_K[0]:.1f} K -> {self.temperature_K[1]:.1f} K; "
                     f"second half {self.mean_temperature_K:.1f} ± {self.std_temperature_K:.1f} K{target}")
        if self.mean_pressure_GPa is not None:
            target = f" (target {self.target_pressure_GPa:g} GPa)" if self.target_pressure_GPa is not None else ""
            lines.append(f"pressure, second half {self.mean_pressure_GPa:.4f} ± {self.std_pressure_GPa:.4f} GPa{target}")
        if self.mean_volume_A3 is not None:
            lines.append(f"volume, second half {self.mean_volume_A3:.2f} ± {self.std_volume_A3:.2f} Å³ "
                         f"({self.mean_volume_A3 / self.n_atoms:.3f} Å³/atom)")
        line = f"total energy {self.total_energy_eV[0]:.6f} eV -> {self.total_energy_eV[1]:.6f} eV"
        if self.ensemble == "nve":  # conserved only here
            line += f", max deviation {self.max_drift_eV_per_atom:.2e} eV/atom"
            if self.drift_eV_per_atom_per_ps is not None:
                line += f", drift {self.drift_eV_per_atom_per_ps:.2e} eV/atom/ps"
        lines.append(line)
        lines.append(f"{1e3 * self.seconds_per_step:.2f} ms per step")
        files = [f"{what} {path}" for what, path in
                 (("log", self.logfile), ("trajectory", self.trajectory), ("plot", self.plot)) if path]
        if files:
            lines.append("wrote " + ", ".join(files))
        return "\n".join(lines)


def energy_drift(time_ps: np.ndarray, total_eV: np.ndarray, n_atoms: int) -> float | None:
    """The slope of a least-squares line through E_tot(t) / N [eV/atom/ps]; None with fewer than two samples.

    Args:
        time_ps: sample times, shape (n_samples,) [ps].
        total_eV: total energy at those times, shape (n_samples,) [eV].
        n_atoms: N.
    """
    if len(time_ps) < 2:
        return None
    return float(np.polyfit(np.asarray(time_ps), np.asarray(total_eV) / n_atoms, 1)[0])


def summarize(samples: MDSamples, *, ensemble: str, steps: int, n_atoms: int, timestep_fs: float,
              seconds_per_step: float, target_temperature_K: float | None, target_pressure_GPa: float | None,
              **files: str | None) -> MDSummary:
    """The :class:`MDSummary` of a run from its samples (``files``: ``logfile``, ``trajectory``, ``plot``)."""
    total = samples.total_eV
    half = len(total) // 2

    def second_half(values: list[float]) -> tuple[float | None, float | None]:
        if not values:
            return None, None
        tail = np.asarray(values[half:])
        return float(tail.mean()), float(tail.std())

    mean_t, std_t = second_half(samples.temperature_K)
    mean_p, std_p = second_half(samples.pressure_GPa)
    mean_v, std_v = second_half(samples.volume_A3)
    return MDSummary(
        steps=steps, n_atoms=n_atoms, ensemble=ensemble,
        temperature_K=(samples.temperature_K[0], samples.temperature_K[-1]),
        total_energy_eV=(float(total[0]), float(total[-1])),
        max_drift_eV_per_atom=float(np.abs(total - total[0]).max() / n_atoms),
        seconds_per_step=seconds_per_step, timestep_fs=timestep_fs, samples=len(total),
        mean_temperature_K=mean_t, std_temperature_K=std_t,
        drift_eV_per_atom_per_ps=energy_drift(samples.time_ps, total, n_atoms) if ensemble == "nve" else None,
        mean_pressure_GPa=mean_p, std_pressure_GPa=std_p, mean_volume_A3=mean_v, std_volume_A3=std_v,
        target_temperature_K=target_temperature_K, target_pressure_GPa=target_pressure_GPa,
        **{name: None if path is None else str(path) for name, path in files.items()},
    )
