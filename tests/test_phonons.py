"""Phonons through our calculator equal phonopy driven directly; batched model calls equal one-by-one
calculator calls; the physics holds (acoustic sum rule, Γ acoustic modes, Dulong-Petit); bad input is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.calculator import BaseCalculator
from ase.calculators.emt import EMT
from ase.units import kB, kJ, mol
from phonopy import Phonopy
from phonopy.structure.atoms import PhonopyAtoms

from equicalc import EquiCalculator
from potentials import load_model
from workflows.cli import main
from workflows.phonons import batched_forces, phonons, to_ase_atoms, to_phonopy_atoms
from tests.conftest import cli_error_line

A_CU = 3.59  # EMT's lattice constant of Cu [Å], near its minimum


def phonopy_directly(atoms: Atoms, calc: BaseCalculator, supercell: tuple[int, int, int]) -> Phonopy:
    """The oracle: phonopy's own workflow, its displaced supercells handed to ``calc`` one at a time."""
    unitcell = PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=atoms.cell[:],
                            scaled_positions=atoms.get_scaled_positions())
    phonon = Phonopy(unitcell, supercell_matrix=np.diag(supercell), primitive_matrix="P")
    phonon.generate_displacements(distance=0.01)
    forces = []
    for cell in phonon.supercells_with_displacements:
        displaced = Atoms(cell.symbols, cell=cell.cell, scaled_positions=cell.scaled_positions, pbc=True)
        displaced.calc = calc
        forces.append(displaced.get_forces())
    phonon.forces = forces
    phonon.produce_force_constants()
    return phonon


@pytest.fixture(scope="module")
def cu_emt(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("cu")
    return phonons(bulk("Cu", a=A_CU), EMT(), supercell=(3, 3, 3), mesh=(8, 8, 8), output_dir=out)


def test_emt_copper_equals_phonopy_driven_by_emt(cu_emt) -> None:
    oracle = phonopy_directly(bulk("Cu", a=A_CU), EMT(), (3, 3, 3))
    np.testing.assert_allclose(cu_emt.force_constants, oracle.force_constants, rtol=0, atol=1e-10)
    bands = oracle.run_band_structure(cu_emt.band.segments)
    band_error = max(np.abs(ours - theirs).max() for ours, theirs in zip(cu_emt.band_frequencies, bands.frequencies))
    mesh = oracle.run_mesh((8, 8, 8), is_gamma_center=True)
    np.testing.assert_allclose(cu_emt.mesh_qpoints, mesh.qpoints)
    mesh_error = np.abs(cu_emt.mesh_frequencies - mesh.frequencies).max()
    assert band_error < 1e-3 and mesh_error < 1e-3, (band_error, mesh_error)  # THz
    assert cu_emt.max_frequency > 7.0  # a real band structure, not zeros


def test_band_path_is_the_standard_fcc_path(cu_emt) -> None:
    assert cu_emt.band.labels == ["Γ", "X", "W", "K", "Γ", "L", "U", "W", "L", "K", "U", "X"]
    # Γ-X of fcc is 2π/a: 1/a without the 2π; X is where the LA and TA branches meet the zone face
    assert cu_emt.band_distances[0][-1] == pytest.approx(1 / A_CU, rel=1e-12)
    cart = cu_emt.band.segments[0][-1] @ np.linalg.inv(cu_emt.phonopy.primitive.cell).T
    assert np.sort(np.abs(cart)) == pytest.approx([0, 0, 1 / A_CU])


def test_acoustic_modes_vanish_at_gamma_and_sum_rule_holds(cu_emt) -> None:
    assert np.abs(cu_emt.gamma_frequencies).max() < 1e-3  # THz
    fc = cu_emt.force_constants  # (n, n, 3, 3) eV/Å²
    scale = np.abs(fc).max()
    assert np.abs(fc.sum(axis=0)).max() < 1e-9 * scale  # Newton's third law: forces sum to zero
    assert np.abs(fc.sum(axis=1)).max() < 1e-9 * scale  # translating the crystal costs nothing
    assert cu_emt.imaginary_modes == 0 and cu_emt.min_frequency[0] > -1e-3


def test_heat_capacity_reaches_dulong_petit(cu_emt) -> None:
    three_r = 3 * kB * mol / kJ * 1e3  # J/K/mol
    assert cu_emt.thermal_at(1000.0)["heat_capacity_J_per_K_mol"] == pytest.approx(three_r, rel=0.01)
    assert cu_emt.heat_capacity[0] == 0.0 and cu_emt.entropy[0] == 0.0


def test_thermal_properties_are_the_harmonic_sums_over_the_mesh(cu_emt) -> None:
    # F = sum over modes of hν/2 + kT ln(1 - exp(-hν/kT)), C_V = k sum of x² eˣ/(eˣ - 1)², x = hν/kT,
    # averaged over the mesh; the acoustic modes at Γ (ν = 0) contribute nothing
    h = 4.135667696e-3  # eV/THz (CODATA 2018)
    nu = cu_emt.mesh_frequencies[cu_emt.mesh_frequencies > 0.01]
    weights = np.broadcast_to(cu_emt.mesh_weights[:, None], cu_emt.mesh_frequencies.shape)
    weights = weights[cu_emt.mesh_frequencies > 0.01] / cu_emt.mesh_weights.sum()
    kt = kB * 300.0
    x = h * nu / kt
    free_energy = (weights * (h * nu / 2 + kt * np.log(-np.expm1(-x)))).sum() * mol / kJ
    heat_capacity = (weights * kB * x**2 * np.exp(x) / np.expm1(x) ** 2).sum() * mol / kJ * 1e3
    thermal = cu_emt.thermal_at(300.0)
    assert thermal["free_energy_kJ_per_mol"] == pytest.approx(free_energy, rel=1e-4)
    assert thermal["heat_capacity_J_per_K_mol"] == pytest.approx(heat_capacity, rel=1e-4)


def test_files_and_band_plot_are_written(cu_emt) -> None:
    names = {Path(f).name for f in cu_emt.files}
    assert names == {"phonopy_params.yaml", "band.yaml", "total_dos.dat", "thermal_properties.yaml",
                     "band_dos.png", "thermal_properties.png", "summary.json"}
    for f in cu_emt.files:
        if f.endswith(".png"):
            data = Path(f).read_bytes()
            assert data.startswith(b"\x89PNG") and len(data) > 20_000, f
    summary = json.loads(Path(next(f for f in cu_emt.files if f.endswith("summary.json"))).read_text())
    assert summary["max_frequency_THz"] == pytest.approx(cu_emt.max_frequency)
    assert summary["displaced_supercells"] == 1 and summary["atoms_supercell"] == 27


def test_imaginary_modes_are_reported() -> None:
    # simple cubic Cu is dynamically unstable in EMT
    result = phonons(bulk("Cu", "sc", a=2.4), EMT(), supercell=(2, 2, 2), mesh=(6, 6, 6))
    lowest, q = result.min_frequency
    assert result.imaginary_modes > 0 and lowest < -1.0
    assert result.summary()["imaginary_modes_on_mesh"] == result.imaginary_modes
    assert np.linalg.norm(q) > 0  # at the zone boundary, not the acoustic modes at Γ


def _cuau() -> Atoms:
    """A CuAu cell of little symmetry (Au off the body centre), so eight displaced supercells."""
    return Atoms("CuAu", scaled_positions=[[0, 0, 0], [0.5, 0.45, 0.45]], cell=[2.8, 2.9, 3.7], pbc=True)


def test_batched_model_equals_calculator_one_supercell_at_a_time() -> None:
    model = load_model("sake-emt-oc").double()
    batched = phonons(_cuau(), model, supercell=(2, 2, 2), mesh=(4, 4, 4), device="cpu")
    assert batched.n_displacements == 8
    oracle = phonopy_directly(_cuau(), EquiCalculator(model, device="cpu", dtype="float64"), (2, 2, 2))
    np.testing.assert_allclose(batched.force_constants, oracle.force_constants, rtol=0, atol=1e-10)
    # two 16-atom supercells per call (four calls) give the same numbers as all eight in one call
    chunked = phonons(_cuau(), model, supercell=(2, 2, 2), mesh=(4, 4, 4), device="cpu", max_atoms_per_call=40)
    np.testing.assert_allclose(chunked.force_constants, batched.force_constants, rtol=0, atol=1e-10)
    assert np.abs(batched.force_constants).max() > 1.0  # eV/Å²: real forces


def test_structure_conversion_round_trip() -> None:
    atoms = _cuau()
    atoms.set_masses([65.0, 190.0])
    back = to_ase_atoms(to_phonopy_atoms(atoms))
    assert (back.numbers == atoms.numbers).all() and back.pbc.all()
    np.testing.assert_allclose(back.cell[:], atoms.cell[:])
    np.testing.assert_allclose(back.positions, atoms.positions, atol=1e-12)
    np.testing.assert_allclose(back.get_masses(), [65.0, 190.0])


@pytest.mark.parametrize(("atoms", "kwargs", "message"), [
    (molecule("H2O"), {}, "periodic along all three axes"),
    (bulk("Cu", a=A_CU), {"displacement": 0.0}, "displacement"),
    (bulk("Cu", a=A_CU), {"displacement": -0.01}, "displacement"),
    (bulk("Cu", a=A_CU), {"displacement": float("nan")}, "displacement"),
    (bulk("Cu", a=A_CU), {"displacement": 5.0}, "at most 0.2"),
    (Atoms("Cu2", positions=[[float("nan"), 0, 0], [1.8, 1.8, 0]], cell=[3.6] * 3, pbc=True), {}, "NaN"),
    (Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 0.01]], cell=[3.6] * 3, pbc=True), {}, "closer than"),
    (bulk("Cu", a=A_CU), {"supercell": (0, 1, 1)}, "supercell"),
    (bulk("Cu", a=A_CU), {"supercell": (2, 2.5, 2)}, "supercell"),
    (bulk("Cu", a=A_CU), {"supercell": [[0, 1, 0], [1, 0, 0], [0, 0, 1]]}, "supercell"),  # det -1
    (bulk("Cu", a=A_CU), {"mesh": (4, 0, 4)}, "mesh"),
    (bulk("Cu", a=A_CU), {"temperatures": [-10.0, 300.0]}, "temperatures"),
    (bulk("Cu", a=A_CU), {"path": "GXQ"}, "no special point Q in this FCC lattice"),
])
def test_bad_input_is_refused(atoms: Atoms, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        phonons(atoms, EMT(), **kwargs)


def test_batched_forces_refuse_an_empty_budget() -> None:
    with pytest.raises(ValueError, match="max_atoms_per_call must be >= 1, got 0"):
        batched_forces(load_model("lj-argon"), [bulk("Ar", a=5.26)], max_atoms_per_call=0)


def test_slab_is_refused() -> None:
    slab = bulk("Cu", a=A_CU)
    slab.pbc = (True, True, False)
    with pytest.raises(ValueError, match=r"pbc=\[True, True, False\]"):
        phonons(slab, EMT())


# the command line


@pytest.fixture
def cu_file(tmp_path: Path) -> str:
    path = tmp_path / "Cu.cif"
    bulk("Cu", a=A_CU).write(path)
    return str(path)


def test_phonons_command_with_emt(cu_file: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out_dir = tmp_path / "out"
    assert main(["phonons", cu_file, "--model", "emt", "--supercell", "2", "2", "2", "--mesh", "4", "4", "4",
                 "--output-dir", str(out_dir)]) == 0
    out = capsys.readouterr().out
    summary = json.loads((out_dir / "summary.json").read_text())
    expected = phonons(bulk("Cu", a=A_CU), EMT(), supercell=(2, 2, 2), mesh=(4, 4, 4))
    assert summary["max_frequency_THz"] == pytest.approx(expected.max_frequency, abs=1e-6)
    assert summary["thermal_near_300K"]["heat_capacity_J_per_K_mol"] == pytest.approx(
        expected.thermal_at(300)["heat_capacity_J_per_K_mol"], abs=1e-6)
    assert f"highest frequency {expected.max_frequency:.4f} THz" in out
    assert "frequencies at Γ [THz]: 0.0000 0.0000 0.0000" in out
    assert "imaginary modes (below -0.01 THz): 0 of 192 on the 4x4x4 mesh" in out
    assert "at 300 K: free energy" in out and str(out_dir / "band_dos.png") in out
    assert (out_dir / "band_dos.png").stat().st_size > 10_000


def test_phonons_command_with_a_model_in_batches(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "CuAu.extxyz"
    _cuau().write(path)
    assert main(["phonons", str(path), "--model", "sake-emt-oc", "--device", "cpu", "--supercell", "2", "2", "2",
                 "--mesh", "4", "4", "4", "--tmin", "100", "--tmax", "500", "--tstep", "200",
                 "--output-dir", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    expected = phonons(_cuau(), "sake-emt-oc", supercell=(2, 2, 2), mesh=(4, 4, 4), device="cpu")
    assert f"with sake-emt-oc: primitive cell of 2 atom(s), {expected.n_displacements} displaced" in out
    assert f"highest frequency {expected.max_frequency:.4f} THz" in out
    assert "at 300 K:" in out  # on the grid 100, 300, 500 K


@pytest.mark.parametrize(("argv", "expected"), [
    (["--displacement-A", "-0.01"], "argument --displacement-A: must be a finite number > 0 [Å]"),
    (["--supercell", "0", "2", "2"], "argument --supercell: must be an integer >= 1 [cells]"),
    (["--mesh", "4", "4"], "argument --mesh: expected 3 arguments"),
    (["--tmin", "-5"], "argument --tmin: must be a finite number >= 0 [K]"),
    (["--tmin", "500", "--tmax", "100"], "--tmax (100.0 K) must be >= --tmin (500.0 K)"),
    (["--path", "GXZ"], "no special point Z in this FCC lattice (it has G, K, L, U, W, X)"),
])
def test_phonons_command_refuses_bad_arguments(
    argv: list[str], expected: str, cu_file: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    err = cli_error_line(["phonons", cu_file, "--model", "emt", "--output-dir", str(tmp_path), *argv], capsys)
    assert expected in err, err


def test_phonons_command_refuses_bad_structures(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    water = tmp_path / "water.xyz"
    molecule("H2O").write(water)
    assert "periodic along all three axes" in cli_error_line(["phonons", str(water), "--model", "emt"], capsys)
    missing = tmp_path / "POSCAR"
    assert "no such file" in cli_error_line(["phonons", str(missing), "--model", "emt"], capsys)
    cu = tmp_path / "Cu.cif"
    bulk("Cu", a=A_CU).write(cu)
    err = cli_error_line(["phonons", str(cu), "--model", "no-such-model", "--device", "cpu"], capsys)
    assert "neither a checkpoint file nor a registered model" in err
    blocked = tmp_path / "taken"
    blocked.write_text("a file, not a folder")
    err = cli_error_line(["phonons", str(cu), "--model", "emt", "--supercell", "1", "1", "1", "--mesh", "2", "2", "2",
                           "--output-dir", str(blocked)], capsys)
    assert str(blocked) in err


def test_phonons_help_explains_every_flag(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["phonons", "--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for flag, text in [("--supercell N N N", "repeats"), ("--displacement-A Å", "in Å"), ("--mesh N N N", "q-mesh"),
                       ("--tmin K", "in K"), ("--tmax K", "in K"), ("--tstep K", "in K"), ("--path PATH", "special"),
                       ("--output-dir DIR", "folder"), ("--model MODEL", "checkpoint"), ("--device DEVICE", "cuda"),
                       ("--dtype", "precision")]:
        assert flag in out and text in out.rsplit(flag, 1)[1][:200], flag
    assert "--model emt" in out
