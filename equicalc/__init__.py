"""equicalc: an ASE calculator for equivariant interatomic potentials.

The models live in :mod:`potentials`; this package adapts them to ``ase.Atoms``: neighbour graphs,
batching, the calculator and the command line.
"""

from .batch import SystemBatch
from .calculator import EquiCalculator
from .evaluate import Prediction, predict
from .neighbors import check_geometry, radius_graph

__version__ = "0.1.0"

__all__ = ["EquiCalculator", "Prediction", "SystemBatch", "check_geometry", "predict", "radius_graph"]
