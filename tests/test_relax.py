"""Relaxation with ASE's optimizers (`workflows.relax.relax`) and the `equicalc relax` / `equicalc info` commands.

Oracles: ASE's optimizers driven directly with the same constraints (the same steps, bit for bit),
the EMT lattice constant of Cu found by minimising E(a) directly, the model's own energy of the
structures the command writes, and the relaxation function for the command.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import add_adsorbate, bulk, fcc111, molecule
from ase.calculators.calculator import all_changes
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms
from ase.io import read, write
from ase.optimize import BFGS, FIRE, LBFGS
from scipy.optimize import minimize_scalar

from workflows.cli import main
from workflows.relax import relax
from tests.conftest import cli_error_line

DIRECT = {"FIRE": FIRE, "BFGS": BFGS, "LBFGS": LBFGS}


def oc20_slab(rattle: float = 0.05, seed: int = 1, adsorbate: bool = True) -> Atoms:
    """A rattled Cu(111) 2x2x3 slab with an O adatom and OC20 tags: lower layers 0 (subsurface), top 1, O 2."""
    slab = fcc111("Cu", (2, 2, 3), vacuum=6.0)
    z = slab.positions[:, 2]
    tags = np.where(z > z.max() - 0.5, 1, 0)
    if adsorbate:
        add_adsorbate(slab, "O", 1.5, "fcc")
        tags = np.append(tags, 2)
    slab.info.pop("adsorbate_info", None)
    slab.set_tags(tags)
    slab.rattle(rattle, seed=seed)
    return slab


@pytest.mark.parametrize("optimizer", ["FIRE", "BFGS", "LBFGS"])
def test_relax_steps_exactly_as_ase_does_with_the_same_fixed_atoms(optimizer: str) -> None:
    slab = oc20_slab()
    start = slab.positions.copy()
    result = relax(slab, EMT(), optimizer=optimizer, fmax=0.02, steps=200)

    direct = slab.copy()
    direct.set_constraint(FixAtoms(indices=np.flatnonzero(slab.get_tags() == 0)))
    direct.calc = EMT()
    opt = DIRECT[optimizer](direct, logfile=None)
    trace: list[float] = []
    opt.attach(lambda: trace.append(direct.get_potential_energy()))
    assert opt.run(fmax=0.02, steps=200)

    assert result.converged and result.error is None
    assert result.steps == opt.nsteps > 5
    np.testing.assert_array_equal(result.atoms.positions, direct.positions)
    assert result.energies == trace and len(result.fmaxes) == result.steps + 1
    assert result.fmax == pytest.approx(np.linalg.norm(direct.get_forces(), axis=1).max(), abs=0)
    assert result.fmax < 0.02 and result.energy_change < 0
    # the result's calculator holds the final energy and every atom's force, fixed ones included
    np.testing.assert_array_equal(result.atoms.get_forces(apply_constraint=False),
                                  direct.get_forces(apply_constraint=False))
    assert result.atoms.get_potential_energy() == direct.get_potential_energy()
    fixed = slab.get_tags() == 0
    np.testing.assert_array_equal(result.atoms.positions[fixed], start[fixed])  # tag-0 atoms never move
    assert not np.allclose(result.atoms.positions[~fixed], start[~fixed])
    np.testing.assert_array_equal(slab.positions, start)  # the input is left as it was


@pytest.mark.parametrize("suffix", [".traj", ".extxyz"])
def test_trajectory_holds_every_step_and_fixed_atoms_never_move(suffix: str, tmp_path) -> None:
    slab = oc20_slab()
    path = tmp_path / f"relax{suffix}"
    result = relax(slab, EMT(), fmax=0.05, steps=40, trajectory=path, logfile=tmp_path / "relax.log")
    frames = read(path, ":")
    assert len(frames) == result.steps + 1
    assert [f.get_potential_energy() for f in frames] == pytest.approx(result.energies, abs=1e-9)
    fixed = slab.get_tags() == 0
    for frame in frames:
        np.testing.assert_allclose(frame.positions[fixed], slab.positions[fixed], atol=1e-9)
    assert "FIRE" in (tmp_path / "relax.log").read_text()


def test_given_indices_and_existing_constraints_are_both_honoured() -> None:
    slab = oc20_slab()
    slab.set_constraint(FixAtoms(indices=[12]))  # the adsorbate, fixed in the input
    result = relax(slab, EMT(), fix=[9, 10], fmax=0.05, steps=50)
    moved = np.linalg.norm(result.atoms.positions - slab.positions, axis=1)
    assert moved[[9, 10, 12]].max() == 0 and moved[11] > 1e-3
    assert moved[:9].max() > 1e-3  # fix given as indices replaces the tag rule: subsurface atoms relax


def emt_lattice_constant() -> float:
    """The fcc Cu lattice constant of EMT [Å], minimising the energy of the primitive cell directly."""
    def energy(a: float) -> float:
        atoms = bulk("Cu", "fcc", a=a)
        atoms.calc = EMT()
        return atoms.get_potential_energy()

    return minimize_scalar(energy, bracket=(3.5, 3.6, 3.7), tol=1e-10).x


def test_cell_relaxation_of_strained_copper_reaches_the_emt_lattice_constant() -> None:
    a0 = emt_lattice_constant()
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.set_cell(atoms.cell[:] @ np.diag([1.04, 0.97, 1.01]), scale_atoms=True)
    atoms.rattle(0.02, seed=3)
    result = relax(atoms, EMT(), optimizer="BFGS", relax_cell=True, fmax=1e-4, steps=300)
    assert result.converged and result.fmax < 1e-4
    np.testing.assert_allclose(result.atoms.cell.lengths(), [a0, a0, a0], atol=1e-4)
    np.testing.assert_allclose(result.atoms.cell.angles(), [90, 90, 90], atol=1e-3)
    assert np.abs(result.atoms.get_stress()).max() < 1e-5  # eV/Å³
    assert a0 == pytest.approx(3.5898, abs=1e-3)


def test_cell_relaxation_of_a_slab_keeps_the_non_periodic_axis() -> None:
    slab = oc20_slab(adsorbate=False)
    slab.set_cell(slab.cell[:] @ np.diag([1.02, 1.02, 1.0]), scale_atoms=True)
    result = relax(slab, EMT(), relax_cell=True, fix="none", fmax=0.05, steps=100)
    np.testing.assert_array_equal(result.atoms.cell[2], slab.cell[2])
    assert result.atoms.cell.lengths()[0] < slab.cell.lengths()[0] - 0.01  # stretched in-plane cell shrinks


class BreaksAfter(EMT):
    """EMT whose results turn NaN after ``calls`` evaluations: ``'energy'`` or the force on ``atom``."""

    def __init__(self, calls: int, what: str, atom: int = 0) -> None:
        super().__init__()
        self.calls, self.what, self.atom, self.count = calls, what, atom, 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        self.count += 1
        if self.count > self.calls:
            if self.what == "energy":
                self.results["energy"] = self.results["free_energy"] = np.nan
            else:
                self.results["forces"][self.atom] = np.nan


@pytest.mark.parametrize(("what", "atom"), [("energy", 0), ("forces", 12), ("forces", 0)])
def test_non_finite_energy_or_forces_stop_the_relaxation_with_an_error(what: str, atom: int) -> None:
    # atom 0 is fixed (tag 0): its NaN force is hidden by FixAtoms from the optimizer, not from relax
    slab = oc20_slab()
    result = relax(slab, BreaksAfter(4, what, atom), fmax=1e-3, steps=100)
    assert not result.converged
    assert result.error == "non-finite energy or forces at step 4"
    assert result.steps == 4 and len(result.energies) == 5
    assert np.isfinite(result.atoms.positions).all()
    assert np.isfinite(result.energies[:4]).all()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"fmax": 0.0}, "fmax must be positive"),
    ({"fmax": -0.1}, "fmax must be positive"),
    ({"fmax": float("nan")}, "fmax must be positive"),
    ({"steps": 0}, "steps must be an integer >= 1"),
    ({"maxstep": 0.0}, "maxstep must be positive"),
    ({"optimizer": "SD"}, "optimizer must be one of FIRE, BFGS, LBFGS, got 'SD'"),
    ({"fix": [13]}, "fix index 13 is out of range for 13 atoms"),
    ({"fix": [-1]}, "fix index -1 is out of range"),
    ({"fix": [1.5]}, "fix indices must be integers"),
    ({"fix": "top"}, "fix must be 'tags', 'none' or a list of atom indices"),
    ({"trajectory": "relax.pdb"}, "trajectory must end in .traj, .extxyz, .xyz"),
    ({"trajectory": "/no/such/folder/relax.traj"}, "trajectory: the folder of"),
])
def test_bad_input_raises_a_value_error_naming_it(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        relax(oc20_slab(), EMT(), **kwargs)


def test_cell_relaxation_of_a_molecule_and_ase_layer_tags_are_refused() -> None:
    with pytest.raises(ValueError, match="cell relaxation needs a periodic system"):
        relax(molecule("H2O"), EMT(), relax_cell=True)
    ase_slab = fcc111("Cu", (2, 2, 3), vacuum=6.0)  # layers tagged 1..3 from the top
    add_adsorbate(ase_slab, "O", 1.5, "fcc")  # tag 0: fix="tags" would freeze the adsorbate
    with pytest.raises(ValueError, match=r"needs OC20 tags .* has tags \[3\]"):
        relax(ase_slab, EMT())


# -- the command line ---------------------------------------------------------------------------------


MODEL = ["--model", "sake-emt-oc", "--device", "cpu"]


def test_relax_command_one_frame_writes_what_the_library_computes(tmp_path, capsys) -> None:
    from equicalc import EquiCalculator

    slab = oc20_slab()
    source = tmp_path / "slab.extxyz"
    slab.write(source)
    traj = tmp_path / "steps.traj"
    assert main(["relax", str(source), *MODEL, "--steps", "6", "--fmax", "0.01", "--trajectory", str(traj)]) == 0
    out = capsys.readouterr().out
    output, plot = tmp_path / "slab_relaxed.extxyz", tmp_path / "slab_relax.png"
    assert f"relaxed structure: {output}" in out and f"relaxation curves: {plot}" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    calc = EquiCalculator("sake-emt-oc", device="cpu")
    expected = relax(read(source), calc, fmax=0.01, steps=6)
    written = read(output)
    np.testing.assert_allclose(written.positions, expected.atoms.positions, atol=1e-7)  # extxyz: 8 decimals
    assert written.get_potential_energy() == pytest.approx(expected.energies[-1], abs=1e-9)
    assert len(read(traj, ":")) == 7
    fixed = slab.get_tags() == 0
    np.testing.assert_allclose(written.positions[fixed], slab.positions[fixed], atol=1e-7)
    assert f"{expected.energies[-1]:.6f}" in out and f"{expected.energy_change:.6f}" in out
    written.calc = calc  # the stored energy and forces are the model's at the written structure
    np.testing.assert_allclose(written.get_forces(apply_constraint=False),
                               expected.atoms.get_forces(apply_constraint=False), atol=1e-6)


def test_relax_command_many_frames_go_through_the_batched_engine(tmp_path, capsys) -> None:
    from equicalc import EquiCalculator

    frames = [oc20_slab(seed=1), oc20_slab(seed=2, adsorbate=False)]
    source = tmp_path / "slabs.extxyz"
    write(source, frames)
    output = tmp_path / "out.traj"
    plot = tmp_path / "curves.png"
    argv = ["relax", str(source), *MODEL, "--optimizer", "LBFGS", "--steps", "5", "--output", str(output),
            "--plot", str(plot)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "relaxed structures:" in out and "relaxing 2 structures one after another" not in out
    written = read(output, ":")
    assert [a.get_chemical_formula() for a in written] == ["Cu12O", "Cu12"]
    calc = EquiCalculator("sake-emt-oc", device="cpu")
    for atoms, frame in zip(written, frames):
        alone = relax(frame, calc, optimizer="LBFGS", steps=5)  # the engine moves each as ASE would alone
        np.testing.assert_allclose(atoms.positions, alone.atoms.positions, atol=1e-6)
        assert atoms.get_potential_energy() == pytest.approx(alone.energies[-1], abs=1e-6)
        assert atoms.info["relax_steps"] == alone.steps
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_relax_command_runs_bfgs_frames_one_after_another(tmp_path, capsys) -> None:
    source = tmp_path / "two.xyz"
    write(source, [oc20_slab(seed=1), oc20_slab(seed=4)])
    assert main(["relax", str(source), *MODEL, "--optimizer", "BFGS", "--steps", "2", "--fix", "none"]) == 0
    out = capsys.readouterr().out
    assert "relaxing 2 structures one after another (the batched engine has no BFGS)" in out
    assert len(read(tmp_path / "two_relaxed.extxyz", ":")) == 2


def test_help_explains_every_relax_flag_with_units(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["relax", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for flag, text in [("--fmax EV_PER_A", "in eV/Å"), ("--steps N", "optimizer steps"), ("--optimizer", "FIRE"),
                       ("--relax-cell", "stress"), ("--fix tags|none|I,J,...", "tag-0"), ("--output FILE", "eV/Å"),
                       ("--plot FILE.png", "[eV]"), ("--trajectory FILE", ".traj"), ("--model MODEL", "checkpoint"),
                       ("--device DEVICE", "cuda"), ("--dtype", "float64")]:
        assert flag in out and text in out.rsplit(flag, 1)[1][:250], flag


@pytest.mark.parametrize(("extra", "expected"), [
    (["--fmax", "0"], "argument --fmax: must be a finite number > 0 [eV/Å], got '0'"),
    (["--fmax", "-1"], "argument --fmax: must be a finite number > 0 [eV/Å], got '-1'"),
    (["--steps", "0"], "argument --steps: must be an integer >= 1 [steps], got '0'"),
    (["--fix", "top"], "argument --fix: must be 'tags', 'none' or comma-separated atom indices"),
    (["--fix", "0,99"], "fix index 99 is out of range for 13 atoms"),
    (["--model", "no-such-model"], "'no-such-model' is neither a checkpoint file nor a registered model"),
    (["--output", "x.pdb"], "--output must end in .extxyz, .xyz, .traj"),
])
def test_relax_command_refuses_bad_input_in_one_line(extra, expected, tmp_path, capsys) -> None:
    source = tmp_path / "slab.extxyz"
    oc20_slab().write(source)
    argv = ["relax", str(source), "--model", "sake-emt-oc", "--device", "cpu", "--steps", "1", *extra]
    assert expected in cli_error_line(argv, capsys)


def test_relax_command_refuses_missing_unreadable_and_unsuitable_files(tmp_path, capsys) -> None:
    missing = tmp_path / "POSCAR"
    assert "no such file" in cli_error_line(["relax", str(missing), *MODEL], capsys)
    bad = tmp_path / "bad.xyz"
    bad.write_text("garbage\nx\n")
    assert f"cannot read structure file {str(bad)!r}" in cli_error_line(["relax", str(bad), *MODEL], capsys)
    water = tmp_path / "water.xyz"
    molecule("H2O").write(water)
    err = cli_error_line(["relax", str(water), *MODEL, "--relax-cell"], capsys)
    assert "cell relaxation needs a periodic system" in err
    two = tmp_path / "two.extxyz"
    write(two, [oc20_slab(), oc20_slab(seed=2)])
    err = cli_error_line(["relax", str(two), *MODEL, "--trajectory", str(tmp_path / "t.traj")], capsys)
    assert "--trajectory records one relaxation" in err


def test_info_lists_the_shipped_potentials_with_their_parameter_counts(capsys) -> None:
    from potentials import available_models, load_model

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for name in available_models():
        model = load_model(name)
        count = sum(p.numel() for p in model.parameters())
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert model.architecture in line and f"{count:,}" in line and f"{model.cutoff:g}" in line
    assert "accuracy: test_id energy MAE" in out


def test_info_shows_what_a_shipped_model_and_checkpoints_hold(tmp_path, capsys) -> None:
    from pathlib import Path

    from potentials import SAKE, SAKEConfig, save_checkpoint

    assert main(["info", "sake-emt-oc"]) == 0
    out = capsys.readouterr().out
    assert "parameters          137,449" in out and "conservative" in out and "H C-O Al Ni Cu Pd Ag Pt Au (11)" in out
    assert "model card:" in out and "not_for:" in out and "training: epochs" in out

    model = SAKE(SAKEConfig(cutoff=3.5, elements=(1, 8), hidden=8, layers=1, heads=1, num_rbf=4)).double()
    path = save_checkpoint(model, tmp_path / "tiny.pt", name="tiny", training={"epochs": 7})
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"parameters          {sum(p.numel() for p in model.parameters()):,}" in out
    assert "precision           float64" in out and "cutoff              3.5 Å" in out
    assert "format              equicalc checkpoint" in out and "training: epochs 7" in out and "hidden: 8" in out

    fairchem = Path(__file__).parent / "fixtures" / "eqv2_small_fairchem.pt"
    assert main(["info", str(fairchem)]) == 0
    out = capsys.readouterr().out
    assert "fairchem-1.x" in out and "direct (a force head" in out and "20 per atom (exactly)" in out


def test_info_refuses_unknown_names_and_unreadable_files_in_one_line(tmp_path, capsys) -> None:
    assert "neither a checkpoint file nor a registered model" in cli_error_line(["info", "no-such-model"], capsys)
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    assert "is not a readable checkpoint" in cli_error_line(["info", str(junk)], capsys)
