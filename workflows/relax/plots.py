"""The relaxation curve: energy and fmax against optimizer step, one curve per structure, as a PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .result import RelaxResult

#: up to this many structures get a legend entry each
MAX_LEGEND = 10


def plot_relaxation(results: Sequence[RelaxResult], path: str | Path, *, fmax: float | None = None) -> Path:
    """Draw every result's relaxation curve and save it as a PNG (matplotlib's Agg canvas, no display).

    Top panel: the energy change from the initial structure, E(step) - E(0) [eV]; bottom panel: the
    largest force on a free atom, fmax(step) [eV/Å], on a log scale, with the threshold ``fmax`` as a
    dashed line when given. Step 0 is the initial structure; each result contributes
    ``len(result.energies)`` points. Non-finite values are left out of the lines.

    Args:
        results: the relaxations to draw (one curve each; labelled by ``index`` up to ten of them).
        path: the PNG file to write.
        fmax: the convergence threshold [eV/Å] to mark.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: no results, or a result with no recorded evaluation.
        OSError: ``path`` cannot be written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not results:
        raise ValueError("no relaxation results to plot")
    empty = [r.index for r in results if not r.energies]
    if empty:
        raise ValueError(f"relaxation {empty[0]} has no recorded evaluation to plot")
    figure = Figure(figsize=(6.4, 6.0), layout="constrained")
    FigureCanvasAgg(figure)
    energy_axes, force_axes = figure.subplots(2, 1, sharex=True)
    labelled = len(results) <= MAX_LEGEND
    for result in sorted(results, key=lambda r: r.index):
        label = f"structure {result.index}" if labelled else None
        steps = range(len(result.energies))
        energy_axes.plot(steps, [e - result.energies[0] for e in result.energies], lw=1.2, label=label)
        force_axes.plot(steps, result.fmaxes, lw=1.2, label=label)
    if fmax is not None:
        force_axes.axhline(fmax, color="k", ls="--", lw=1.0, label=f"fmax = {fmax:g} eV/Å")
    energy_axes.set_ylabel("E - E(initial) [eV]")
    force_axes.set_ylabel("fmax [eV/Å]")
    force_axes.set_yscale("log")
    force_axes.set_xlabel("optimizer step")
    energy_axes.set_title(f"relaxation of {len(results)} structure{'s' if len(results) > 1 else ''}")
    if labelled or fmax is not None:
        force_axes.legend(fontsize="small")
    path = Path(path)
    figure.savefig(path, dpi=120)
    return path
