"""Simulation workflows built on :mod:`equicalc` and :mod:`potentials`: molecular dynamics, and more to come."""

from .md import MDSummary, run_md

__all__ = ["MDSummary", "run_md"]
