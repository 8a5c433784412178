"""Pictures of a screen (matplotlib, Agg backend, PNG): the energy spread over placements, a configuration."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from ase import Atoms

if TYPE_CHECKING:
    from .evaluation import Summary

#: placements up to this many get their config_id as an x tick label
MAX_TICK_LABELS = 30


def plot_energy_spread(path: str | Path, system: str, ml_energies: Mapping[str, float],
                       anomalies: Mapping[str, Sequence[str]], verified: Mapping[str, float] | None = None,
                       best: str | None = None) -> Path:
    """Save the adsorption energy of every placement, ranked by ML energy, as a PNG.

    One point per placement (x: rank by ML energy, y: adsorption energy [eV]): valid placements filled,
    anomalous ones hollow, one colour per combination of kinds (legend); verified (reference) energies as
    crosses at the same rank; the ``best`` configuration circled. Non-finite energies are left out.

    Args:
        path: the PNG file to write.
        system: the system's name, for the title (e.g. ``"*CO on Pd(111)"``).
        ml_energies: config_id -> ML adsorption energy [eV].
        anomalies: config_id -> the anomaly kinds found (see :data:`workflows.screen.anomaly.ANOMALIES`);
            a missing or empty entry is a valid placement.
        verified: config_id -> reference adsorption energy [eV] of the verified placements.
        best: the config_id of the chosen configuration, to mark.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: ``best`` or a verified config_id that is not in ``ml_energies``.
        OSError: ``path`` cannot be written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    verified = dict(verified or {})
    unknown = sorted(set(verified) - set(ml_energies))
    if best is not None and best not in ml_energies:
        unknown.append(best)
    if unknown:
        raise ValueError(f"config_id {unknown[0]!r} has no ML energy")
    ranked = sorted((config for config, energy in ml_energies.items() if math.isfinite(energy)),
                    key=lambda config: ml_energies[config])
    rank = {config: i for i, config in enumerate(ranked)}

    figure = Figure(figsize=(max(6.4, 0.15 * len(ranked) + 2.0), 4.4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    groups: dict[str, list[str]] = {}
    for config in ranked:
        groups.setdefault("+".join(anomalies.get(config, ())) or "valid", []).append(config)
    colours = itertools.cycle(["C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9"])
    for label, configs in groups.items():
        valid = label == "valid"
        colour = "C0" if valid else next(colours)
        axes.scatter([rank[c] for c in configs], [ml_energies[c] for c in configs], s=30, zorder=2,
                     facecolors=colour if valid else "none", edgecolors=colour,
                     label=f"ML, {label}" if valid else f"ML, anomalous: {label}")
    shown = [c for c in verified if c in rank and math.isfinite(verified[c])]
    if shown:
        axes.scatter([rank[c] for c in shown], [verified[c] for c in shown], marker="x", s=40, color="k", zorder=3,
                     label="verified (reference)")
    if best is not None and best in rank:
        energies = [ml_energies[best]] + ([verified[best]] if best in shown else [])
        axes.scatter([rank[best]] * len(energies), energies, s=160, facecolors="none", edgecolors="k",
                     linewidths=1.5, zorder=4, label=f"best: {best}")
    if not ranked:
        axes.text(0.5, 0.5, "no finite ML energy", ha="center", va="center", transform=axes.transAxes)
    elif len(ranked) <= MAX_TICK_LABELS:
        axes.set_xticks(range(len(ranked)), ranked, rotation=90, fontsize="small")
    axes.set_xlabel("placement, ranked by ML energy")
    axes.set_ylabel("adsorption energy (eV)")
    axes.set_title(f"{system}: {len(ranked)} placements")
    if ranked:
        axes.legend(fontsize="small")
    path = Path(path)
    figure.savefig(path, dpi=120)
    return path


def plot_configuration(path: str | Path, atoms: Atoms, title: str) -> Path:
    """Save a top view (slab repeated 2x2 in the periodic in-plane directions) and a side view of ``atoms``.

    Drawn with :func:`ase.visualize.plot.plot_atoms` (rotations ``''`` and ``'-90x'``), atoms as spheres of
    their covalent radii in Jmol colours, the cell's edges dotted.

    Args:
        path: the PNG file to write.
        atoms: the configuration (an adslab, positions [Å]).
        title: the figure's title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: no atoms, or non-finite positions.
        OSError: ``path`` cannot be written.
    """
    from ase.visualize.plot import plot_atoms
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if len(atoms) == 0:
        raise ValueError("no atoms to draw")
    if not np.isfinite(atoms.positions).all():
        raise ValueError("cannot draw a configuration with non-finite positions")
    repeat = tuple(2 if periodic else 1 for periodic in atoms.pbc[:2]) + (1,)
    figure = Figure(figsize=(9.0, 4.4), layout="constrained")
    FigureCanvasAgg(figure)
    top, side = figure.subplots(1, 2)
    plot_atoms(atoms.repeat(repeat), top, rotation="")
    plot_atoms(atoms, side, rotation="-90x")
    top.set_title("top view" + (" (2x2)" if repeat != (1, 1, 1) else ""))
    side.set_title("side view")
    figure.suptitle(title)
    path = Path(path)
    figure.savefig(path, dpi=120)
    return path


def plot_success(path: str | Path, summaries: Mapping[str, Summary]) -> Path:
    """Success rate [%] at k = 1..top_k of each model (``summaries``: label -> its benchmark
    :class:`.evaluation.Summary`), with the 0.1 eV criterion in the title. Returns the PNG path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.5, 4))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for label, summary in summaries.items():
        ks = sorted(summary.success)
        axes.plot(ks, [100 * summary.success[k] for k in ks], marker="o", label=f"{label} (ML-only "
                  f"{100 * summary.ml_only:.0f} %)")
    axes.set_xlabel("k (configurations verified by the reference)")
    axes.set_ylabel("success rate (%)")
    axes.set_ylim(0, 100)
    axes.set_xticks(sorted(next(iter(summaries.values())).success))
    axes.set_title("best verified within 0.1 eV of the ground truth, or lower", fontsize=9)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return Path(path)
