"""Harmonic phonons with phonopy, the forces from an equicalc model (batched) or any ASE calculator.

    >>> from ase.build import bulk
    >>> from ase.calculators.emt import EMT
    >>> result = phonons(bulk("Cu", a=3.59), EMT(), supercell=(2, 2, 2), mesh=(4, 4, 4))
    >>> result.band.labels[:4], round(result.max_frequency, 1)
    (['Γ', 'X', 'W', 'K'], 8.1)
"""

from .band_path import BandPath, band_path
from .forces import batched_forces, calculator_forces
from .plots import plot_bands_and_dos, plot_thermal_properties
from .result import PhononResult
from .structures import to_ase_atoms, to_phonopy_atoms
from .workflow import phonons, write_outputs

__all__ = [
    "BandPath", "PhononResult", "band_path", "batched_forces", "calculator_forces", "phonons",
    "plot_bands_and_dos", "plot_thermal_properties", "to_ase_atoms", "to_phonopy_atoms", "write_outputs",
]
