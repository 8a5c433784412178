"""Simulation workflows built on :mod:`equicalc` and :mod:`potentials`: molecular dynamics, and more to come.

The ``equicalc`` command line lives here too, in :mod:`workflows.cli`.
"""

from .md import MDSummary, run_md

__all__ = ["MDSummary", "run_md"]
