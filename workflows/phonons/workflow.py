"""Harmonic phonons by finite displacements: phonopy's method, the forces from our calculator."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import BaseCalculator
from ase.neighborlist import neighbor_list
from phonopy import Phonopy
from phonopy.structure.cells import guess_primitive_matrix

from equicalc import EquiCalculator
from potentials import Potential

from .band_path import band_path
from .forces import batched_forces, calculator_forces
from .plots import plot_bands_and_dos, plot_thermal_properties
from .result import PhononResult
from .structures import to_ase_atoms, to_phonopy_atoms

#: the default temperatures of the thermal properties [K]
TEMPERATURES_K = np.arange(0.0, 1001.0, 10.0)


def phonons(
    atoms: Atoms,
    calculator_or_model: BaseCalculator | Potential | str | os.PathLike,
    *,
    supercell: Sequence[int] | Sequence[Sequence[int]] | np.ndarray = (3, 3, 3),
    displacement: float = 0.01,
    mesh: Sequence[int] = (20, 20, 20),
    path: str = "auto",
    band_points: int = 51,
    temperatures: Sequence[float] | np.ndarray = TEMPERATURES_K,
    imaginary_tolerance: float = 0.01,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "float64",
    max_atoms_per_call: int = 4096,
    output_dir: str | os.PathLike | None = None,
) -> PhononResult:
    """Harmonic phonons of the crystal ``atoms`` by finite displacements (Parlinski, Li and Kawazoe,
    Phys. Rev. Lett. 78, 4063 (1997); phonopy: Togo, J. Phys. Soc. Jpn. 92, 012001 (2023)).

    Phonopy builds the supercell, finds the primitive cell (``atoms``' own cell, basis vectors as
    given, when that is primitive) and the symmetry-distinct displacements;
    the forces on the displaced supercells give the force constants, from which come the band
    structure along ``path``, the DOS (tetrahedron method) and the thermal properties on the
    Γ-centred ``mesh``. ``atoms`` should be relaxed: at a structure that is not a minimum the
    residual forces enter the force constants.

    Args:
        atoms: the unit cell, periodic along all three axes.
        calculator_or_model: an equicalc model (a :class:`potentials.Potential`, a registered name
            or a checkpoint path, run in ``device`` and ``dtype``) or an :class:`equicalc.EquiCalculator`
            (its model): all displaced supercells in batched model calls. Any other ASE calculator
            (e.g. ``EMT()``): one supercell at a time.
        supercell: ``(n_a, n_b, n_c)`` repeats of the unit cell, or an integer ``(3, 3)`` matrix whose
            rows give the supercell vectors in units of the unit cell's (phonopy's convention).
        displacement: length of each atomic displacement [Å].
        mesh: q-points along each reciprocal axis of the primitive cell, for the DOS and the
            thermal properties.
        path: ``"auto"`` (the standard band path of the lattice, Setyawan-Curtarolo, from ASE) or
            special points by ASE's labels, e.g. ``"GXWKGLUWLK,UX"`` (see :func:`band_path`).
        band_points: q-points on the longest segment of the band path.
        temperatures: ``(n_T,)`` temperatures of the thermal properties [K].
        imaginary_tolerance: frequencies below ``-imaginary_tolerance`` [THz] count as imaginary;
            modes below ``+imaginary_tolerance`` (imaginary ones and the acoustic ones at Γ) are
            left out of the thermal properties.
        device, dtype: where and in what precision an equicalc model given by name, path or
            object runs (as :class:`equicalc.EquiCalculator` takes them).
        max_atoms_per_call: atoms in one batched model call at most; more supercells are split
            into several calls (bounds the memory).
        output_dir: if given, write there ``phonopy_params.yaml`` (structure, displacements and
            forces: ``phonopy.load`` rebuilds everything), ``band.yaml``, ``total_dos.dat``,
            ``thermal_properties.yaml``, ``summary.json``, ``band_dos.png`` and
            ``thermal_properties.png`` (created if missing).

    Returns:
        the :class:`PhononResult`.

    Raises:
        ValueError: a structure that is not periodic along all three axes or has no 3-D cell, a
            ``displacement`` that is not a finite number > 0, a supercell that is not three positive
            integers or an integer matrix of positive determinant, a mesh that is not three
            positive integers, temperatures that are not finite and >= 0, a bad ``path``, or what
            the model refuses (unknown elements, coinciding atoms).
        OSError: ``output_dir`` cannot be written.
    """
    _check_structure(atoms)
    if not (math.isfinite(displacement) and 0 < displacement <= MAX_DISPLACEMENT):
        raise ValueError(f"displacement must be a finite number > 0 and at most {MAX_DISPLACEMENT} Å (harmonic "
                         f"finite differences want small ones; phonopy's default is 0.01), got {displacement!r}")
    supercell_matrix = _supercell_matrix(supercell)
    mesh_numbers = _mesh(mesh)
    temperatures = np.asarray(temperatures, dtype=np.float64).reshape(-1)
    if temperatures.size == 0 or not (np.isfinite(temperatures).all() and (temperatures >= 0).all()):
        raise ValueError(f"temperatures must be finite numbers >= 0 [K], got {temperatures.tolist()}")

    unitcell = to_phonopy_atoms(atoms)
    primitive_matrix = guess_primitive_matrix(unitcell)
    if abs(np.linalg.det(primitive_matrix)) > 1 - 1e-6:  # already primitive: keep its basis vectors
        primitive_matrix = np.eye(3)
    phonon = Phonopy(unitcell, supercell_matrix=supercell_matrix, primitive_matrix=primitive_matrix)
    path_qpoints = band_path(phonon.primitive.cell, path, band_points)
    phonon.generate_displacements(distance=displacement)
    supercells = [to_ase_atoms(cell) for cell in phonon.supercells_with_displacements]
    if isinstance(calculator_or_model, BaseCalculator) and not isinstance(calculator_or_model, EquiCalculator):
        model = type(calculator_or_model).__name__
        phonon.forces = calculator_forces(calculator_or_model, supercells)
    else:
        calc = calculator_or_model if isinstance(calculator_or_model, EquiCalculator) else EquiCalculator(
            calculator_or_model, device=device, dtype=dtype)
        model = calc.parameters["model"]
        phonon.forces = batched_forces(calc.model, supercells, max_atoms_per_call=max_atoms_per_call)
    phonon.produce_force_constants(show_drift=False)

    # results through phonopy's properties (its run_* methods return them only since phonopy 3)
    phonon.run_band_structure(path_qpoints.segments, path_connections=path_qpoints.connections,
                              labels=path_qpoints.labels)
    phonon.run_qpoints([[0.0, 0.0, 0.0]])
    gamma = phonon.qpoints.frequencies[0]
    phonon.run_mesh(mesh_numbers, is_gamma_center=True)
    phonon.run_total_dos()
    phonon.run_thermal_properties(temperatures=temperatures, cutoff_frequency=imaginary_tolerance)
    bands, grid, dos = phonon.band_structure, phonon.mesh, phonon.total_dos
    kelvin, free_energy, entropy, heat_capacity = phonon.thermal_properties.thermal_properties
    result = PhononResult(
        phonopy=phonon, model=model, n_displacements=len(supercells), force_constants=phonon.force_constants,
        band=path_qpoints, band_distances=list(bands.distances), band_frequencies=list(bands.frequencies),
        gamma_frequencies=gamma, mesh=mesh_numbers, mesh_qpoints=grid.qpoints, mesh_weights=grid.weights,
        mesh_frequencies=grid.frequencies, dos_frequencies=dos.frequency_points, dos=dos.dos,
        temperatures=kelvin, free_energy=free_energy, entropy=entropy, heat_capacity=heat_capacity,
        imaginary_tolerance=imaginary_tolerance,
    )
    if output_dir is not None:
        write_outputs(result, output_dir)
    return result


def write_outputs(result: PhononResult, output_dir: str | os.PathLike) -> None:
    """Write the files of a phonon calculation into ``output_dir`` (created if missing; see
    :func:`phonons`) and list them in ``result.files``.

    Raises:
        OSError: the folder cannot be created or written.
    """
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    phonon = result.phonopy
    files = {name: folder / name for name in ("phonopy_params.yaml", "band.yaml", "total_dos.dat",
                                             "thermal_properties.yaml", "band_dos.png",
                                             "thermal_properties.png", "summary.json")}
    phonon.save(files["phonopy_params.yaml"])
    phonon.write_yaml_band_structure(filename=files["band.yaml"])
    phonon.write_total_dos(filename=files["total_dos.dat"])
    phonon.write_yaml_thermal_properties(filename=files["thermal_properties.yaml"])
    plot_bands_and_dos(result, files["band_dos.png"])
    plot_thermal_properties(result, files["thermal_properties.png"])
    result.files = [str(f) for f in files.values()]
    files["summary.json"].write_text(json.dumps(result.summary(), indent=2, ensure_ascii=False) + "\n",
                                     encoding="utf-8")


#: the largest finite displacement accepted [Å]
MAX_DISPLACEMENT = 0.2
#: atoms closer than this are refused [Å]
COINCIDENCE_A = 0.1


def _check_structure(atoms: Atoms) -> None:
    """Refuse a structure phonons by periodic supercells cannot describe (before spglib sees it: it
    crashes the process on non-finite positions)."""
    if len(atoms) == 0:
        raise ValueError("phonons need at least one atom, got a structure without atoms")
    if not (np.isfinite(atoms.positions).all() and np.isfinite(atoms.cell.array).all()):
        raise ValueError("the structure's positions or cell contain NaN or infinite values")
    if not atoms.pbc.all():
        raise ValueError(f"phonons need a crystal periodic along all three axes, got pbc={atoms.pbc.tolist()}")
    if abs(atoms.cell.volume) < 1e-6:
        raise ValueError(f"phonons need a 3-D cell, got a cell of volume {atoms.cell.volume:.3g} Å³")
    close = neighbor_list("ij", atoms, COINCIDENCE_A)
    if len(close[0]):
        i, j = int(close[0][0]), int(close[1][0])
        raise ValueError(f"atoms {i} and {j} (or a periodic image) are closer than {COINCIDENCE_A} Å")


def _supercell_matrix(supercell: Sequence[int] | Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
    """``(3, 3)`` integer supercell matrix from three repeats or a matrix; ValueError otherwise."""
    values = _integers(supercell)
    if values is not None and values.shape == (3,) and (values >= 1).all():
        return np.diag(values)
    if values is not None and values.shape == (3, 3) and round(np.linalg.det(values)) >= 1:
        return values
    raise ValueError("supercell must be three integers >= 1 or a (3, 3) integer matrix of positive determinant, "
                     f"got {supercell!r}")


def _mesh(mesh: Sequence[int]) -> tuple[int, int, int]:
    """The q-mesh as three integers >= 1; ValueError otherwise."""
    values = _integers(mesh)
    if values is None or values.shape != (3,) or (values < 1).any():
        raise ValueError(f"mesh must be three integers >= 1, got {mesh!r}")
    return int(values[0]), int(values[1]), int(values[2])


def _integers(values: object) -> np.ndarray | None:
    """``values`` as an int64 array if every entry is a whole number, else None."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if not (np.isfinite(array).all() and np.array_equal(array, np.round(array))):
        return None
    return array.astype(np.int64)
