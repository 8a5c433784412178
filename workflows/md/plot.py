"""A picture of an MD run: energies, temperature, and pressure and volume where there are any."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .observers import MDSamples


def plot_md(samples: MDSamples, path: str | Path, *, n_atoms: int, title: str,
            target_temperature_K: float | None = None, target_pressure_GPa: float | None = None) -> Path:
    """Save panels over simulated time [ps] to ``path`` (PNG, with matplotlib's Agg renderer) and return it.

    Panels: E_pot, E_kin and E_tot less their first value [meV/atom] (energy exchange, and for NVE
    conservation, on one scale); the temperature [K]; the pressure [GPa] when sampled; the volume
    [Å³] when sampled. Targets are dashed lines.
    """
    t = np.asarray(samples.time_ps)
    panels = 2 + bool(samples.pressure_GPa) + bool(samples.volume_A3)
    fig = Figure(figsize=(7, 2.2 * panels), layout="constrained")
    axes = fig.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
    energies = (("E_pot", samples.potential_eV), ("E_kin", samples.kinetic_eV), ("E_tot", samples.total_eV))
    for label, values in energies:
        values = np.asarray(values)
        axes[0].plot(t, 1e3 * (values - values[0]) / n_atoms, label=label, lw=1)
    axes[0].set_ylabel("E − E(0) [meV/atom]")
    axes[0].legend(loc="best", fontsize="small", ncols=3)
    rows = [("temperature [K]", samples.temperature_K, target_temperature_K),
            ("pressure [GPa]", samples.pressure_GPa, target_pressure_GPa),
            ("volume [Å³]", samples.volume_A3, None)]
    for ax, (label, values, target) in zip(axes[1:], [row for row in rows if row[1]]):
        ax.plot(t, values, lw=1)
        if target is not None:
            ax.axhline(target, color="k", ls="--", lw=0.8, label=f"target {target:g}")
            ax.legend(loc="best", fontsize="small")
        ax.set_ylabel(label)
    axes[-1].set_xlabel("time [ps]")
    fig.suptitle(title)
    fig.savefig(path, dpi=120)
    return Path(path)
