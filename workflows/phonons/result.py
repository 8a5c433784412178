"""What a phonon calculation gives: force constants, bands, DOS, thermal properties, imaginary modes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase.symbols import Symbols
from phonopy import Phonopy

from .band_path import BandPath


@dataclass
class PhononResult:
    """Harmonic phonons of a crystal (finite displacements, phonopy).

    Frequencies are in THz, imaginary ones as negative numbers. q-points are in reduced coordinates
    of the primitive cell's reciprocal lattice (without 2π). Thermal properties are per mole of
    primitive cells (phonopy's convention), at constant volume.

    Attributes:
        phonopy: phonopy's object, force constants set: for anything further (eigenvectors, group
            velocities, ``phonopy.save``).
        model: what gave the forces (a model label or the ASE calculator's name).
        n_displacements: displaced supercells evaluated.
        force_constants: ``(n_supercell, n_supercell, 3, 3)`` [eV/Å²].
        band: the band path, its q-points (``band.segments``) and labels.
        band_distances: per segment, ``(n_q,)`` distance along the path [1/Å, without 2π].
        band_frequencies: per segment, ``(n_q, n_bands)`` [THz].
        gamma_frequencies: ``(n_bands,)`` at Γ [THz].
        mesh: the Γ-centred q-mesh of the DOS and thermal properties.
        mesh_qpoints: ``(n_irreducible, 3)`` its symmetry-irreducible q-points.
        mesh_weights: ``(n_irreducible,)`` how many mesh points each stands for.
        mesh_frequencies: ``(n_irreducible, n_bands)`` [THz].
        dos_frequencies: ``(n_points,)`` [THz]; dos: ``(n_points,)`` total DOS [states/THz per primitive cell].
        temperatures: ``(n_T,)`` [K]; free_energy: ``(n_T,)`` Helmholtz vibrational free energy [kJ/mol];
            entropy, heat_capacity: ``(n_T,)`` [J/K/mol] (heat capacity at constant volume).
        imaginary_tolerance: frequencies below ``-imaginary_tolerance`` [THz] count as imaginary modes.
        files: the files written, if any.
    """

    phonopy: Phonopy
    model: str
    n_displacements: int
    force_constants: np.ndarray
    band: BandPath
    band_distances: list[np.ndarray]
    band_frequencies: list[np.ndarray]
    gamma_frequencies: np.ndarray
    mesh: tuple[int, int, int]
    mesh_qpoints: np.ndarray
    mesh_weights: np.ndarray
    mesh_frequencies: np.ndarray
    dos_frequencies: np.ndarray
    dos: np.ndarray
    temperatures: np.ndarray
    free_energy: np.ndarray
    entropy: np.ndarray
    heat_capacity: np.ndarray
    imaginary_tolerance: float
    files: list[str] = field(default_factory=list)

    @property
    def formula(self) -> str:
        """Chemical formula of the primitive cell, e.g. ``'AuCu'``."""
        return Symbols.fromsymbols(self.phonopy.primitive.symbols).get_chemical_formula("metal")

    @property
    def imaginary_modes(self) -> int:
        """Modes below ``-imaginary_tolerance`` on the full q-mesh (each mesh point counted)."""
        return int((self.mesh_weights[:, None] * (self.mesh_frequencies < -self.imaginary_tolerance)).sum())

    @property
    def min_frequency(self) -> tuple[float, np.ndarray]:
        """The lowest frequency [THz] along the band path and on the mesh, and its q-point ``(3,)``."""
        qpoints = np.concatenate([*self.band.segments, self.mesh_qpoints])
        lowest = np.concatenate([*self.band_frequencies, self.mesh_frequencies]).min(axis=1)
        k = int(np.argmin(lowest))
        return float(lowest[k]), qpoints[k]

    @property
    def max_frequency(self) -> float:
        """The highest frequency [THz] along the band path and on the mesh."""
        return float(max(np.concatenate(self.band_frequencies).max(), self.mesh_frequencies.max()))

    def thermal_at(self, temperature: float) -> dict[str, float]:
        """Thermal properties at the computed temperature nearest ``temperature`` [K]: ``temperature_K``,
        ``free_energy_kJ_per_mol``, ``entropy_J_per_K_mol``, ``heat_capacity_J_per_K_mol``."""
        k = int(np.argmin(np.abs(self.temperatures - temperature)))
        return {"temperature_K": float(self.temperatures[k]),
                "free_energy_kJ_per_mol": float(self.free_energy[k]),
                "entropy_J_per_K_mol": float(self.entropy[k]),
                "heat_capacity_J_per_K_mol": float(self.heat_capacity[k])}

    def summary(self) -> dict[str, Any]:
        """The headline numbers as a JSON-friendly dict (units in the keys)."""
        primitive, supercell = self.phonopy.primitive, self.phonopy.supercell
        lowest, q_lowest = self.min_frequency
        return {
            "model": self.model,
            "formula": self.formula,
            "atoms_primitive": len(primitive),
            "atoms_supercell": len(supercell),
            "supercell_matrix": self.phonopy.supercell_matrix.tolist(),
            "displaced_supercells": self.n_displacements,
            "band_path": self.band.labels,
            "mesh": list(self.mesh),
            "gamma_frequencies_THz": self.gamma_frequencies.tolist(),
            "max_frequency_THz": self.max_frequency,
            "min_frequency_THz": lowest,
            "min_frequency_qpoint": q_lowest.tolist(),
            "imaginary_tolerance_THz": self.imaginary_tolerance,
            "imaginary_modes_on_mesh": self.imaginary_modes,
            "modes_on_mesh": int(self.mesh_weights.sum() * self.mesh_frequencies.shape[1]),
            "thermal_near_300K": self.thermal_at(300.0),
            "files": self.files,
        }

