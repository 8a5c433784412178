"""Molecular dynamics: energy conservation (NVE), thermostats (NVT) and barostats (NPT) hold their
targets, outputs are written as the run goes, the command line, and bad input.

The physics runs use the lj-argon model through our calculator (a few ms per step); one check
uses a trained model (sake-emt-oc) and one the plain ASE calculator EMT.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk, molecule
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones as AseLennardJones
from ase.constraints import FixAtoms
from ase.eos import EquationOfState
from ase.io import read

from equicalc import EquiCalculator
from potentials import LennardJonesConfig
from workflows.cli import main
from workflows.md import ENSEMBLES, MDSummary, make_integrator, run_md
from workflows.md.ensembles import bulk_modulus_GPa
from tests.conftest import CountingLJ, cli_error_line

THERMOSTATS = ("langevin", "bussi", "nhc")


@pytest.fixture(scope="module")
def lj_calc() -> EquiCalculator:
    return EquiCalculator("lj-argon", device="cpu", dtype="float64")


def argon(calc: Calculator, repeat: int | tuple[int, int, int] = 3, a: float = 5.26) -> Atoms:
    """fcc argon, 4 * prod(repeat) atoms, with ``calc`` attached."""
    atoms = bulk("Ar", "fcc", a=a, cubic=True).repeat(repeat)
    atoms.calc = calc
    return atoms


# ---------------------------------------------------------------------------------------------
# NVE: energy conservation


def nve_200_argon(calc: EquiCalculator, picoseconds: float) -> MDSummary:
    """The acceptance system: 200 atoms of fcc argon (5 x 5 x 2 cubic cells, periodic), float64,
    velocity Verlet with 5 fs steps from 120 K, which settles near 60 K (half the kinetic energy
    goes into the potential energy of the crystal)."""
    atoms = argon(calc, (5, 5, 2))
    return run_md(atoms, steps=round(picoseconds * 200), timestep_fs=5.0, temperature_K=120.0, ensemble="nve")


def test_nve_conserves_energy_short(lj_calc: EquiCalculator) -> None:
    """0.5 ps of the acceptance run. Velocity Verlet's total energy fluctuates (an O(dt²) shadow
    Hamiltonian, about 7e-6 eV/atom here) with no drift; over 0.5 ps these fluctuations alone
    give a fitted slope of up to about 7e-6 / 0.5 = 1.4e-5 eV/atom/ps (measured: 2.8e-6), so the
    bound is 5e-5 eV/atom/ps; a force off by 1 % already drifts 100 times faster."""
    summary = nve_200_argon(lj_calc, 0.5)
    assert summary.temperature_K[0] - summary.mean_temperature_K > 30  # the crystal really moves
    assert summary.max_drift_eV_per_atom < 2e-5
    assert abs(summary.drift_eV_per_atom_per_ps) < 5e-5


@pytest.mark.slow
def test_nve_drift_over_10_ps_is_below_1e5_eV_per_atom_per_ps(lj_calc: EquiCalculator) -> None:
    """The acceptance figure: 10 ps (2000 steps of 5 fs), 200 atoms, float64; measured 8.2e-9 eV/atom/ps
    and a largest deviation of 6.5e-6 eV/atom, in about 15 s."""
    summary = nve_200_argon(lj_calc, 10.0)
    assert summary.steps * summary.timestep_fs == 10_000
    assert abs(summary.drift_eV_per_atom_per_ps) < 1e-5
    assert summary.max_drift_eV_per_atom < 2e-5


def test_trained_model_nve_error_is_the_integrators() -> None:
    """A trained model (sake-emt-oc, float64, 32 Cu atoms from 600 K): velocity Verlet's energy error
    is O(dt²) when the forces are exactly -dE/dr, so halving the step quarters the largest deviation
    of E_tot (measured: 8.0e-5 -> 2.0e-5 eV/atom over 40 fs, ratio 4.00); forces that are not the
    energy's gradient, or an energy that jumps as atoms cross the cutoff, leave an error that does
    not shrink so."""
    calc = EquiCalculator("sake-emt-oc", device="cpu", dtype="float64")
    deviation = {}
    for dt in (2.0, 1.0):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
        atoms.calc = calc
        deviation[dt] = run_md(atoms, steps=round(40 / dt), timestep_fs=dt, temperature_K=600.0, interval=1,
                               seed=0).max_drift_eV_per_atom
    assert deviation[1.0] < 5e-5
    assert deviation[2.0] / deviation[1.0] == pytest.approx(4.0, rel=0.1)


# ---------------------------------------------------------------------------------------------
# NVT: thermostats


@pytest.mark.parametrize("ensemble", THERMOSTATS)
def test_thermostat_holds_the_target_temperature(lj_calc: EquiCalculator, ensemble: str) -> None:
    """108 argon atoms at 60 K, 4 ps of 5 fs steps from a perfect crystal (which first loses half its
    kinetic energy to the potential). Over the second half the mean temperature is within 5 % of
    the target (measured: Langevin 58.7 K, Bussi 58.8 K, NHC 60.6 K), and the temperature
    fluctuates as in the canonical ensemble, σ_T = T sqrt(2 / 3N) = 4.7 K, within 40 % (measured
    4.9, 4.2, 5.7 K; Berendsen's rescaling, which is not canonical, gives 1.5 K)."""
    atoms = argon(lj_calc)
    summary = run_md(atoms, steps=800, timestep_fs=5.0, temperature_K=60.0, ensemble=ensemble, interval=5, seed=1)
    assert summary.mean_temperature_K == pytest.approx(60.0, rel=0.05)
    assert summary.std_temperature_K == pytest.approx(60.0 * math.sqrt(2 / (3 * len(atoms))), rel=0.4)
    assert summary.drift_eV_per_atom_per_ps is None and summary.target_temperature_K == 60.0


def test_langevin_with_ase_emt_heats_copper() -> None:
    """Any ASE calculator: Langevin with ASE's EMT takes 32 Cu atoms from 0 K to 300 K (friction
    0.02 /fs: a 50 fs relaxation time, 2 ps run) within 10 % (σ_T = 300 sqrt(2/96) = 43 K per sample)."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    atoms.calc = EMT()
    atoms.set_momenta(np.zeros((len(atoms), 3)))
    atoms.positions[0] += 0.01  # momenta all zero: run_md draws velocities, at 0 K none
    summary = run_md(atoms, steps=1000, timestep_fs=2.0, temperature_K=300.0, ensemble="langevin",
                     friction_per_fs=0.02, interval=2, seed=0)
    assert summary.mean_temperature_K == pytest.approx(300.0, rel=0.1)


# ---------------------------------------------------------------------------------------------
# NPT: barostats


@pytest.mark.parametrize(("ensemble", "pdamp_fs"), [("npt-mtk", 1000.0), ("npt-berendsen", 500.0)])
def test_barostat_holds_the_target_pressure(lj_calc: EquiCalculator, ensemble: str, pdamp_fs: float) -> None:
    """108 argon atoms at 60 K start at a = 5.26 Å, where the pressure settles near 0.21 GPa in NVT,
    10 standard deviations from the target 0.05 GPa. After 4 ps of 5 fs steps the mean pressure
    over the second half is within one standard deviation of the instantaneous pressure of the
    target (measured: MTK 0.0509 ± 0.0206 GPa, Berendsen 0.0550 ± 0.0057 GPa), the crystal has
    expanded to take it, and the thermostat holds 60 K within 5 %."""
    atoms = argon(lj_calc)
    volume = atoms.get_volume()
    summary = run_md(atoms, steps=800, timestep_fs=5.0, temperature_K=60.0, ensemble=ensemble, pressure_GPa=0.05,
                     pdamp_fs=pdamp_fs, interval=5, seed=1)
    assert abs(summary.mean_pressure_GPa - 0.05) < summary.std_pressure_GPa
    assert summary.mean_volume_A3 > 1.005 * volume
    assert summary.mean_temperature_K == pytest.approx(60.0, rel=0.05)


@pytest.mark.parametrize("anisotropic", [False, True])
def test_mtk_conserves_its_extended_energy(lj_calc: EquiCalculator, anisotropic: bool) -> None:
    """ASE's MTK integrators conserve an extended energy (atoms + thermostat + barostat + PV) only if
    the stress is the strain derivative of the energy: our calculator's stress passes (largest
    deviation over 1 ps measured 5.4e-6 and 5.6e-6 eV/atom, isotropic and full cell alike)."""
    atoms = argon(lj_calc)
    atoms.set_momenta(np.random.default_rng(0).normal(size=(len(atoms), 3)) * np.sqrt(
        atoms.get_masses()[:, None] * units.kB * 60.0))
    dyn = make_integrator(atoms, "npt-mtk", timestep_fs=5.0, temperature_K=60.0, pressure_GPa=0.05,
                          anisotropic=anisotropic)
    conserved: list[float] = []
    dyn.attach(lambda: conserved.append(dyn.get_conserved_energy()), interval=5)
    dyn.run(200)
    deviation = np.abs(np.array(conserved) - conserved[0]).max() / len(atoms)
    assert deviation < 2e-5
    if anisotropic:  # the full cell moved, off-diagonal elements included
        assert np.abs(atoms.cell[:] - np.diag(np.diag(atoms.cell[:]))).max() > 1e-4


def test_bulk_modulus_estimate_matches_an_equation_of_state() -> None:
    """The Berendsen barostat's compressibility 1/B: B of EMT copper from two strained evaluations
    equals ASE's equation-of-state fit (about 134 GPa) within 2 %."""
    atoms = bulk("Cu", "fcc", a=3.6)
    atoms.calc = EMT()
    volumes, energies = [], []
    for scale in np.linspace(0.98, 1.02, 7):
        probe = atoms.copy()
        probe.set_cell(atoms.cell * scale, scale_atoms=True)
        probe.calc = EMT()
        volumes.append(probe.get_volume())
        energies.append(probe.get_potential_energy())
    eos = EquationOfState(volumes, energies)
    v0, _, b0 = eos.fit()
    equilibrium = bulk("Cu", "fcc", a=3.6 * (v0 / atoms.get_volume()) ** (1 / 3))
    equilibrium.calc = EMT()
    assert bulk_modulus_GPa(equilibrium) == pytest.approx(b0 / units.GPa, rel=0.02)


# ---------------------------------------------------------------------------------------------
# one model call per step


@pytest.mark.parametrize("ensemble", ["nve", "langevin", "bussi", "nhc", "npt-mtk"])
def test_one_model_call_per_step_with_pressure_logged(ensemble: str) -> None:
    """Integrators, log (energies, pressure, volume) and trajectory all read the calculator's cache:
    one model call per step plus the first. (ASE's Berendsen NPT moves the atoms between its own
    stress and force reads, so it costs two.)"""
    atoms = argon(EquiCalculator(CountingLJ(LennardJonesConfig(sigma=3.405, epsilon=0.0103, cutoff=8.0)),
                                 device="cpu"), repeat=2)
    CountingLJ.calls = 0
    summary = run_md(atoms, steps=10, timestep_fs=5.0, temperature_K=60.0, ensemble=ensemble, interval=1,
                     pressure_GPa=0.0 if ensemble == "npt-mtk" else None)
    assert summary.mean_pressure_GPa is not None
    assert CountingLJ.calls == 11


# ---------------------------------------------------------------------------------------------
# initial velocities, seeds


def test_initial_velocities_are_maxwell_boltzmann_at_rest(lj_calc: EquiCalculator) -> None:
    atoms = argon(lj_calc, repeat=5)  # 500 atoms: the sampled temperature is within 3 σ = 3 * 6 %
    run_md(atoms, steps=0, temperature_K=300.0, seed=7)
    p = atoms.get_momenta()
    assert np.abs(p.sum(axis=0)).max() < 1e-10
    assert atoms.get_temperature() == pytest.approx(300.0, rel=0.12)
    # each Cartesian velocity component is Gaussian with variance k_B T / m: kurtosis 3
    v = (p / atoms.get_masses()[:, None]).ravel()
    assert np.mean(v**4) / np.mean(v**2) ** 2 == pytest.approx(3.0, abs=0.3)


def test_same_seed_same_run_other_seed_other_run(lj_calc: EquiCalculator) -> None:
    runs = []
    for seed in (3, 3, 4):
        atoms = argon(lj_calc, repeat=2)
        run_md(atoms, steps=5, temperature_K=60.0, ensemble="langevin", seed=seed)
        runs.append(atoms.positions.copy())
    assert np.array_equal(runs[0], runs[1]) and not np.allclose(runs[0], runs[2])


def test_atoms_with_momenta_continue(lj_calc: EquiCalculator) -> None:
    """A second call continues from the momenta of the first instead of drawing new ones."""
    atoms = argon(lj_calc, repeat=2)
    run_md(atoms, steps=5, temperature_K=60.0)
    momenta = atoms.get_momenta().copy()
    summary = run_md(atoms, steps=0, temperature_K=600.0)
    assert np.array_equal(atoms.get_momenta(), momenta) and summary.temperature_K[0] < 100


# ---------------------------------------------------------------------------------------------
# outputs: log, trajectory, plot, summary


def read_log(path: Path) -> tuple[list[str], np.ndarray]:
    lines = path.read_text().splitlines()
    return lines[0].lstrip("# ").split(), np.loadtxt(lines[1:], ndmin=2)


@pytest.mark.parametrize("suffix", [".traj", ".extxyz"])
def test_log_trajectory_plot_and_summary_agree(lj_calc: EquiCalculator, tmp_path: Path, suffix: str) -> None:
    atoms = argon(lj_calc, repeat=2)
    log, traj, png = tmp_path / "md.log", tmp_path / f"md{suffix}", tmp_path / "md.png"
    summary = run_md(atoms, steps=23, timestep_fs=4.0, temperature_K=60.0, ensemble="npt-mtk", pressure_GPa=0.1,
                     interval=5, logfile=log, trajectory=traj, plot=png)
    header, table = read_log(log)
    assert header == ["time[ps]", "Etot[eV]", "Epot[eV]", "Ekin[eV]", "T[K]", "P[GPa]", "V[A^3]"]
    assert table[:, 0] == pytest.approx([0, 0.02, 0.04, 0.06, 0.08, 0.092])  # every 5 steps, and the last
    assert table[-1, 3] == pytest.approx(atoms.get_kinetic_energy(), abs=1e-6)
    assert table[-1, 6] == pytest.approx(atoms.get_volume(), abs=1e-4)
    assert table[:, 1] == pytest.approx(table[:, 2] + table[:, 3], abs=2e-6)
    frames = read(traj, ":")
    assert len(frames) == len(table) == summary.samples
    assert [f.get_potential_energy() for f in frames] == pytest.approx(table[:, 2], abs=1e-6)
    assert frames[-1].get_volume() == pytest.approx(atoms.get_volume())
    half = table[len(table) // 2:]
    assert summary.mean_pressure_GPa == pytest.approx(half[:, 5].mean(), abs=1e-5)
    assert summary.mean_volume_A3 == pytest.approx(half[:, 6].mean(), abs=1e-3)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (summary.logfile, summary.trajectory, summary.plot) == (str(log), str(traj), str(png))
    assert f"plot {png}" in summary.report() and "pressure, second half" in summary.report()


def test_nve_drift_is_the_slope_of_a_line_through_the_log(lj_calc: EquiCalculator, tmp_path: Path) -> None:
    log = tmp_path / "md.log"
    atoms = argon(lj_calc, repeat=2)
    summary = run_md(atoms, steps=40, timestep_fs=5.0, temperature_K=60.0, interval=4, logfile=log)
    _, table = read_log(log)
    slope = np.polyfit(table[:, 0], table[:, 1] / len(atoms), 1)[0]
    # the log rounds E_tot to 1e-6 eV: 3e-8 eV/atom here, up to 3e-7 eV/atom/ps in a slope over 0.2 ps
    assert summary.drift_eV_per_atom_per_ps == pytest.approx(slope, abs=5e-7)
    assert summary.max_drift_eV_per_atom == pytest.approx(np.abs(table[:, 1] - table[0, 1]).max() / len(atoms),
                                                          abs=1e-7)
    assert abs(slope) > 5e-6  # a slope well above the rounding (the fluctuations of 0.2 ps)


def test_a_molecule_has_no_pressure_column(tmp_path: Path) -> None:
    atoms = molecule("H2O")
    atoms.calc = EMT()
    log = tmp_path / "md.log"
    summary = run_md(atoms, steps=4, timestep_fs=0.5, temperature_K=100.0, ensemble="bussi", interval=2, logfile=log)
    header, _ = read_log(log)
    assert header[-1] == "T[K]" and summary.mean_pressure_GPa is None


class FailingLJ(AseLennardJones):
    """ASE's LJ that fails on its ``fail_at``-th calculation."""

    def __init__(self, fail_at: int) -> None:
        super().__init__(sigma=3.405, epsilon=0.0103, rc=8.0)
        self.fail_at, self.count = fail_at, 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        self.count += 1
        if self.count == self.fail_at:
            raise RuntimeError("the calculator stopped")
        super().calculate(atoms, properties, system_changes)


def test_log_and_trajectory_are_written_as_the_run_goes(tmp_path: Path) -> None:
    """A run that dies at step 30 leaves the log lines and frames of steps 0..20 on disk."""
    atoms = argon(FailingLJ(fail_at=31), repeat=2)
    log, traj = tmp_path / "md.log", tmp_path / "md.extxyz"
    with pytest.raises(RuntimeError, match="stopped"):
        run_md(atoms, steps=100, timestep_fs=5.0, temperature_K=60.0, interval=10, logfile=log, trajectory=traj)
    _, table = read_log(log)
    assert table[:, 0] == pytest.approx([0.0, 0.05, 0.1])
    assert len(read(traj, ":")) == 3


# ---------------------------------------------------------------------------------------------
# bad input


class EnergyOnly(AseLennardJones):
    implemented_properties = ["energy", "forces"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"timestep_fs": -1.0}, "timestep_fs"),
    ({"temperature_K": -5.0}, "temperature_K"),
    ({"tdamp_fs": 0.0}, "tdamp_fs"),
    ({"pdamp_fs": -1.0, "ensemble": "npt-mtk", "pressure_GPa": 0.0}, "pdamp_fs"),
    ({"pressure_GPa": math.nan, "ensemble": "npt-mtk"}, "pressure_GPa"),
    ({"compressibility_per_GPa": 0.0, "ensemble": "npt-berendsen", "pressure_GPa": 0.0}, "compressibility_per_GPa"),
    ({"anisotropic": 1}, "anisotropic"),
    ({"ensemble": "npt"}, "ensemble must be one of"),
    ({"ensemble": "npt-mtk"}, "needs a target pressure"),
    ({"ensemble": "npt-berendsen"}, "needs a target pressure"),
    ({"ensemble": "nve", "pressure_GPa": 1.0}, "pressure_GPa is used only by the NPT"),
    ({"ensemble": "bussi", "temperature_K": 0.0}, "temperature_K must be positive"),
    ({"ensemble": "nhc", "temperature_K": 0.0}, "temperature_K must be positive"),
    ({"trajectory": "md.pdb"}, "trajectory.*must end in"),
])
def test_bad_arguments_raise_a_value_error_naming_them(lj_calc: EquiCalculator, kwargs: dict, message: str) -> None:
    atoms = argon(lj_calc, repeat=1)
    with pytest.raises(ValueError, match=message):
        run_md(atoms, steps=2, **kwargs)
    assert not atoms.get_momenta().any()  # refused before anything was changed


def test_npt_needs_a_periodic_system_with_stress_and_mtk_no_constraints(lj_calc: EquiCalculator) -> None:
    water = molecule("H2O")
    water.calc = EMT()
    for ensemble in ("npt-mtk", "npt-berendsen"):
        with pytest.raises(ValueError, match=r"periodic along all three axes.*pbc=\[False, False, False\]"):
            run_md(water, steps=1, ensemble=ensemble, pressure_GPa=0.0)
    slab = argon(lj_calc, repeat=1)
    slab.pbc = (True, True, False)
    with pytest.raises(ValueError, match="periodic along all three axes"):
        run_md(slab, steps=1, ensemble="npt-mtk", pressure_GPa=0.0)
    no_stress = argon(EnergyOnly(sigma=3.405, epsilon=0.0103, rc=8.0), repeat=1)
    with pytest.raises(ValueError, match="needs stress.*EnergyOnly"):
        run_md(no_stress, steps=1, ensemble="npt-berendsen", pressure_GPa=0.0)
    fixed = argon(lj_calc, repeat=1)
    fixed.set_constraint(FixAtoms([0]))
    with pytest.raises(ValueError, match="npt-mtk.*constraints.*FixAtoms"):
        run_md(fixed, steps=1, ensemble="npt-mtk", pressure_GPa=0.0)


def test_every_ensemble_is_known() -> None:
    assert ENSEMBLES == ("nve", "langevin", "bussi", "nhc", "npt-mtk", "npt-berendsen")


# ---------------------------------------------------------------------------------------------
# command line


def test_md_command_npt_writes_everything(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    structure = tmp_path / "argon.extxyz"
    bulk("Ar", "fcc", a=5.3, cubic=True).repeat(2).write(structure)
    log, traj, png = tmp_path / "md.log", tmp_path / "md.traj", tmp_path / "md.png"
    argv = ["md", str(structure), "--device", "cpu", "--ensemble", "npt-berendsen", "--pressure-GPa", "0.1",
            "--temperature-K", "50", "--steps", "20", "--timestep-fs", "5", "--tdamp-fs", "50", "--pdamp-fs", "200",
            "--interval", "5", "--log", str(log), "--trajectory", str(traj), "--plot", str(png)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "NPT-Berendsen MD: 20 steps of 5 fs (0.1 ps), 32 atoms" in out
    assert "(target 0.1 GPa)" in out and "volume, second half" in out and f"plot {png}" in out
    assert len(read(traj, ":")) == 5 and png.stat().st_size > 0
    assert read_log(log)[0][-2:] == ["P[GPa]", "V[A^3]"]


def test_md_command_default_demo(capsys: pytest.CaptureFixture) -> None:
    assert main(["md", "--steps", "10", "--device", "cpu", "--ensemble", "nhc"]) == 0
    out = capsys.readouterr().out
    assert "NVT-NHC MD: 10 steps of 5 fs" in out and "108 atoms" in out and "target 40 K" in out


def test_md_command_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base = ["md", "--device", "cpu", "--steps", "1"]
    garbage = tmp_path / "garbage.xyz"
    garbage.write_text("not a structure\n")
    assert "cannot read structure file" in cli_error_line([*base, str(garbage)], capsys)
    assert "no such file" in cli_error_line([*base, str(tmp_path / "missing.cif")], capsys)
    water = tmp_path / "water.xyz"
    molecule("H2O").write(water)
    err = cli_error_line([*base, str(water), "--model", "sake-emt-oc", "--ensemble", "npt-mtk", "--pressure-GPa", "0"],
                         capsys)
    assert "periodic along all three axes" in err
    assert "needs a target pressure" in cli_error_line([*base, "--ensemble", "npt-mtk"], capsys)
    assert "argument --ensemble" in cli_error_line([*base, "--ensemble", "npt"], capsys)
    assert "argument --pressure-GPa" in cli_error_line([*base, "--pressure-GPa", "nan"], capsys)
    assert "argument --tdamp-fs" in cli_error_line([*base, "--tdamp-fs", "-100"], capsys)
    assert "argument --friction" in cli_error_line([*base, "--friction", "-0.1"], capsys)
    assert "once" in cli_error_line([*base, str(water), "--structure", str(water)], capsys)


def test_md_help_gives_units(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["md", "--help"])
    out = capsys.readouterr().out
    for text in ("in fs", "in K", "in GPa", "in 1/fs", "1/GPa", "npt-mtk", "nhc", "bussi", "eV/atom/ps"):
        assert text in out, text
