"""Molecular dynamics through any ASE calculator: NVE, NVT (Langevin, Bussi, Nosé-Hoover chain) and
NPT (MTK, Berendsen) with ASE's integrators, a log, a trajectory, a summary and a plot."""

from .ensembles import ENSEMBLES, make_integrator
from .observers import MDSamples
from .plot import plot_md
from .run import run_md
from .summary import MDSummary

__all__ = ["ENSEMBLES", "MDSamples", "MDSummary", "make_integrator", "plot_md", "run_md"]
