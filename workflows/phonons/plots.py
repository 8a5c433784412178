"""Figures of a phonon calculation (matplotlib, Agg backend, PNG): bands beside the DOS, thermal properties."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

from .result import PhononResult  # noqa: E402


def plot_bands_and_dos(result: PhononResult, path: str | os.PathLike) -> None:
    """Save the band structure [THz] along the path, with the total DOS beside it on the same
    frequency axis, as a PNG at ``path``. Imaginary modes show as negative frequencies."""
    fig, (bands, dos) = plt.subplots(1, 2, sharey=True, figsize=(8, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    labels = iter(result.band.labels)  # phonopy's order: each run's start, then each segment's end
    ticks: list[float] = []
    names: list[str] = []
    new_run = True
    for distances, frequencies, connected in zip(result.band_distances, result.band_frequencies,
                                                 result.band.connections, strict=True):
        bands.plot(distances, frequencies, color="tab:blue", linewidth=1)
        if new_run:
            start = next(labels)
            if ticks and ticks[-1] == distances[0]:  # a jump in q at one point of the axis: "U|K"
                names[-1] += f"|{start}"
            else:
                ticks.append(distances[0])
                names.append(start)
        ticks.append(distances[-1])
        names.append(next(labels))
        new_run = not connected
    bands.set_xticks(ticks, names)
    for x in ticks:
        bands.axvline(x, color="0.6", linewidth=0.6)
    bands.axhline(0.0, color="0.3", linewidth=0.6, linestyle="--")
    bands.set_xlim(ticks[0], ticks[-1])
    bands.set_ylabel("frequency [THz]")
    bands.set_title(f"{result.formula} ({result.model}): phonon bands")
    dos.plot(result.dos, result.dos_frequencies, color="tab:blue", linewidth=1)
    dos.fill_betweenx(result.dos_frequencies, result.dos, alpha=0.2)
    dos.axhline(0.0, color="0.3", linewidth=0.6, linestyle="--")
    dos.set_xlim(left=0)
    dos.set_xlabel("DOS [states/THz]")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def plot_thermal_properties(result: PhononResult, path: str | os.PathLike) -> None:
    """Save the vibrational free energy [kJ/mol], entropy and heat capacity [J/K/mol] against
    temperature [K] as a PNG at ``path``."""
    fig, (energy, heat) = plt.subplots(1, 2, figsize=(9, 4))
    energy.plot(result.temperatures, result.free_energy, color="tab:blue")
    energy.set_xlabel("temperature [K]")
    energy.set_ylabel("free energy F [kJ/mol]")
    energy.set_title("Helmholtz free energy")
    heat.plot(result.temperatures, result.entropy, color="tab:orange", label="entropy S")
    heat.plot(result.temperatures, result.heat_capacity, color="tab:green", label="heat capacity $C_V$")
    heat.set_xlabel("temperature [K]")
    heat.set_ylabel("[J/K/mol]")
    heat.legend()
    heat.set_title("entropy and heat capacity")
    fig.suptitle(f"{result.formula} ({result.model}), per mole of primitive cells")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
