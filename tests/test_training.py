"""The training pipeline: config checks, bad data, reference energies, loss derivatives, exact resume, DDP."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from ase.build import add_adsorbate, fcc111, molecule
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms
from ase.db import connect
from ase.io import write

from potentials import ConfigError, load_checkpoint
from workflows.training import DataError, Trainer, example_yaml, from_dict, load_config, read_frames, train
from workflows.training.loss import Targets, batch_of, compare
from workflows.training.statistics import fit_reference_energies

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def labelled_slabs(n: int, seed: int = 0) -> list:
    """``n`` small rattled M(111) slabs with an adatom, fixed bottom layers, EMT labels."""
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        slab = fcc111(("Cu", "Pt", "Au")[k % 3], size=(2, 2, 2), vacuum=5.0)
        add_adsorbate(slab, ("O", "H", "C")[(k // 3) % 3], 1.7, "fcc")
        slab.set_tags([1] * 8 + [2])
        slab.set_constraint(FixAtoms(indices=range(4)))
        slab.positions += rng.normal(scale=0.08, size=slab.positions.shape)
        slab.calc = EMT()
        energy, forces = slab.get_potential_energy(), slab.get_forces()
        slab.calc = SinglePointCalculator(slab, energy=energy, forces=forces)
        frames.append(slab)
    return frames


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "slabs.db"
    with connect(path) as db:
        for k, atoms in enumerate(labelled_slabs(30)):
            db.write(atoms, split="val" if k % 5 == 4 else "train")
    return path


def config(database: Path, output: Path, **training) -> dict:
    return {
        "model": {"architecture": "sake", "dtype": "float64",
                  "config": {"cutoff": 4.0, "hidden": 8, "layers": 1, "heads": 1, "avg_num_neighbors": "auto"}},
        "data": {"train": {"path": str(database), "select": "split=train"},
                 "validation": {"path": str(database), "select": "split=val"}},
        "training": {"epochs": 2, "batch_size": 3, "output": str(output), "progress": False, "num_threads": 1,
                     **training},
    }


# ---------------------------------------------------------------- config
def test_example_config_is_complete_and_loads(tmp_path: Path) -> None:
    text = example_yaml()
    raw = yaml.safe_load(text)
    cfg = from_dict(raw)
    assert cfg.data.train.select == "split=train"
    # every key of every section is documented by a comment line before it
    lines = text.splitlines()
    for k, line in enumerate(lines):
        if line.startswith("  ") and not line.strip().startswith("#") and ":" in line:
            assert lines[k - 1].strip().startswith("#"), line


@pytest.mark.parametrize("change, message", [
    ({"optimizer": {"lr": -1}}, "optimizer.lr must be a finite number > 0"),
    ({"optimizer": {"lrr": 1}}, "unknown key(s) optimizer.lrr"),
    ({"loss": {"forces_weight": "ten"}}, "loss.forces_weight must be float"),
    ({"model": {"architecture": "mace"}}, "model.architecture must be one of"),
    ({"training": {"epochs": 0}}, "training.epochs must be an integer >= 1"),
    ({"data": {"train": None}}, "data.train is required"),
])
def test_bad_config_names_the_key(tmp_path: Path, database: Path, change: dict, message: str) -> None:
    raw = config(database, tmp_path)
    for section, values in change.items():
        raw[section] = {**raw.get(section, {}), **values} if values is not None else None
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        from_dict(raw)


def test_malformed_yaml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


# ---------------------------------------------------------------- bad data
def _write_extxyz(path: Path, frames: list) -> None:
    write(path, frames, format="extxyz")


@pytest.mark.parametrize("defect, message", [
    ("no_forces", r"frame 2: no forces under key 'forces'"),
    ("nan_energy", r"frame 2: no finite energy under key 'energy'"),
    ("element", r"frame 2: element\(s\) Ar that the model lacks"),
])
def test_bad_frames_are_named_before_training(tmp_path: Path, database: Path, defect: str, message: str) -> None:
    frames = labelled_slabs(6)
    bad = frames[2]
    if defect == "no_forces":
        bad.calc = SinglePointCalculator(bad, energy=bad.get_potential_energy())
    elif defect == "nan_energy":
        bad.calc = SinglePointCalculator(bad, energy=np.nan, forces=bad.get_forces())
    else:
        bad.numbers[0] = 18
    data = tmp_path / "frames.extxyz"
    _write_extxyz(data, frames)
    raw = config(database, tmp_path / "run")
    raw["data"] = {"train": {"path": str(data)}, "validation_fraction": 0.2}
    raw["model"]["config"]["elements"] = [1, 6, 8, 29, 78, 79]
    with pytest.raises(DataError, match=message):
        train(from_dict(raw))
    assert not (tmp_path / "run").exists()  # nothing started


def test_missing_file_and_empty_selection(tmp_path: Path, database: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_frames(tmp_path / "absent.db")
    with pytest.raises(DataError, match="matches no frame"):
        read_frames(database, "split=nothing")


def test_labels_under_other_keys(tmp_path: Path) -> None:
    frames = labelled_slabs(3)
    for atoms in frames:
        atoms.info["REF_energy"] = atoms.get_potential_energy() + 1.0
        atoms.arrays["REF_forces"] = 2 * atoms.get_forces()
        atoms.calc = None
    path = tmp_path / "ref.extxyz"
    write(path, frames, format="extxyz")
    read = read_frames(path, energy_key="REF_energy", forces_key="REF_forces")
    assert read[1].energy == pytest.approx(frames[1].info["REF_energy"])
    np.testing.assert_allclose(read[1].forces, frames[1].arrays["REF_forces"])
    assert read[1].free.sum() == 5  # FixAtoms survives extxyz


# ---------------------------------------------------------------- statistics and loss
def test_least_squares_reference_energies_recover_a_linear_model(database: Path) -> None:
    """Energies linear in the composition are fitted exactly; the E0s themselves are recovered when the
    compositions determine them (here every slab has 8 metal atoms and one adsorbate, so a constant can
    move between metals and adsorbates, until frames of other compositions are added)."""
    frames = read_frames(database)
    truth = {1: -1.5, 6: -7.25, 8: -4.0, 29: -3.5, 78: -6.0, 79: -3.0}
    elements = tuple(sorted(truth))

    def fitted() -> np.ndarray:
        for frame in frames:
            frame.energy = sum(truth[int(z)] for z in frame.atoms.numbers)
        e0 = np.array(fit_reference_energies(frames, elements))
        counts = np.array([[np.sum(f.atoms.numbers == z) for z in elements] for f in frames])
        np.testing.assert_allclose(counts @ e0, [f.energy for f in frames], atol=1e-9)
        return e0

    assert not np.allclose(fitted(), [truth[z] for z in elements], atol=1e-6)
    for extra in read_frames(database)[:2]:
        extra.atoms.numbers[-3:] = 1  # other compositions: more H, fewer metal atoms
        frames.append(extra)
    np.testing.assert_allclose(fitted(), [truth[z] for z in elements], atol=1e-9)


@pytest.mark.parametrize("architecture, extra", [
    ("sake", {"hidden": 8, "layers": 1, "heads": 1}),
    ("egnn", {"hidden": 8, "layers": 1}),
    ("equiformer_v2", {"num_layers": 1, "lmax": 2, "mmax": 1, "sphere_channels": 8, "attn_hidden_channels": 8,
                       "num_heads": 2, "attn_alpha_channels": 4, "attn_value_channels": 4, "ffn_hidden_channels": 8,
                       "edge_channels": 8, "num_distance_basis": 16, "grid_resolution": 6}),
])
def test_loss_gradient_matches_finite_differences(tmp_path: Path, database: Path, architecture: str,
                                                  extra: dict) -> None:
    """The parameter gradient of the energy + force loss (a second derivative of the model) equals a
    central finite difference of the loss along a random direction, in float64."""
    raw = config(database, tmp_path)
    raw["model"] = {"architecture": architecture, "dtype": "float64", "config": {"cutoff": 4.0, **extra}}
    trainer = Trainer(from_dict(raw))
    frames = trainer.train_frames[:3]
    trainer.loss_and_gradients(frames)
    direction = [torch.randn_like(p) for p in trainer.parameters]
    analytic = sum(float((p.grad * d).sum()) for p, d in zip(trainer.parameters, direction) if p.grad is not None)

    def loss_at(step: float) -> float:
        with torch.no_grad():
            for p, d in zip(trainer.parameters, direction):
                p.add_(step * d)
        value = trainer.loss_and_gradients(frames)
        with torch.no_grad():
            for p, d in zip(trainer.parameters, direction):
                p.sub_(step * d)
        return value

    h = 1e-5
    numeric = (loss_at(h) - loss_at(-h)) / (2 * h)
    assert numeric == pytest.approx(analytic, rel=1e-5, abs=1e-9)


def test_metrics_are_zero_for_perfect_predictions(database: Path) -> None:
    frames = read_frames(database)[:4]
    targets = Targets.of(frames, torch.device("cpu"), free_atoms_only=True)

    class Exact:
        energy = targets.energy
        forces = targets.forces
        stress = None

    sums = compare(Exact, targets, from_dict(config(database, Path("x"))).loss)
    assert float(sums.rho_energy) == 0 and float(sums.rho_forces) == 0 and float(sums.forces_cos) == 4 * 5
    assert batch_of(frames, torch.device("cpu")).n_systems == 4


# ---------------------------------------------------------------- the loop
def test_training_lowers_the_validation_error_and_writes_loadable_checkpoints(tmp_path: Path, database: Path) -> None:
    raw = config(database, tmp_path / "run", epochs=6)
    raw["optimizer"] = {"lr": 0.01, "warmup_epochs": 0.5}
    result = train(from_dict(raw))
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert len(rows) == 6
    first, last = float(rows[0]["val_forces_mae_meV_per_A"]), float(rows[-1]["val_forces_mae_meV_per_A"])
    assert last < 0.8 * first
    model = load_checkpoint(result.best)
    assert model.metadata["training"]["epochs"] >= 1 and model.dtype == torch.float64


def _metrics(path: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(open(path / "metrics.csv"))]


def test_a_run_killed_mid_epoch_resumes_to_the_same_metrics(tmp_path: Path, database: Path) -> None:
    whole, interrupted = tmp_path / "whole", tmp_path / "interrupted"
    for output in (whole, interrupted):
        (tmp_path / f"{output.name}.yaml").write_text(yaml.safe_dump(config(database, output, batch_size=1,
                                                                             checkpoint_every=2, epochs=2)))
    command = [str(BIN / "python"), "-m", "workflows.cli", "train"]
    subprocess.run(command + [str(tmp_path / "whole.yaml")], check=True, cwd=ROOT, capture_output=True)

    process = subprocess.Popen(command + [str(tmp_path / "interrupted.yaml")], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_file = interrupted / "resume.pt"
    deadline = time.time() + 120
    killed_at = None
    while time.time() < deadline and process.poll() is None:
        if state_file.exists():
            try:
                state = torch.load(state_file, weights_only=True)
            except Exception:  # being replaced right now
                continue
            if state["epoch"] == 1 and state["step_in_epoch"] >= 4:
                process.send_signal(signal.SIGKILL)
                process.wait()
                killed_at = (state["epoch"], state["step_in_epoch"])
                break
        time.sleep(0.005)
    assert killed_at is not None, "the run was not caught mid-epoch"
    assert len(_metrics(interrupted)) == 1  # one epoch logged before the kill
    done = subprocess.run(command + [str(tmp_path / "interrupted.yaml")], check=True, cwd=ROOT,
                          capture_output=True, text=True)
    assert "resuming" in done.stdout
    assert _metrics(interrupted) == _metrics(whole)
    a, b = load_checkpoint(whole / "last.pt"), load_checkpoint(interrupted / "last.pt")
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[name]), name


def test_resuming_with_another_config_is_refused(tmp_path: Path, database: Path) -> None:
    raw = config(database, tmp_path / "run", epochs=1)
    train(from_dict(raw))
    raw["optimizer"] = {"lr": 0.5}
    with pytest.raises(ConfigError, match="different optimizer"):
        train(from_dict(raw))


# ---------------------------------------------------------------- data parallel
DDP_SCRIPT = """
import sys, torch, yaml
from workflows.training import Trainer, from_dict
trainer = Trainer(from_dict(yaml.safe_load(open(sys.argv[1]))))
frames = trainer.train_frames[:5]
loss = trainer.loss_and_gradients(frames)
if trainer.processes.is_main:
    torch.save({"loss": loss, "grads": [p.grad for p in trainer.parameters]}, sys.argv[2])
"""


@pytest.mark.skipif(shutil.which("torchrun", path=str(BIN)) is None, reason="torchrun not installed")
def test_two_gloo_processes_give_the_loss_and_gradients_of_one(tmp_path: Path, database: Path) -> None:
    """Under torchrun with 2 CPU processes (gloo), each evaluating half of a global batch of 5 frames of
    different sizes, the loss and the summed gradients equal one process's on the whole batch; and a
    whole run (2 epochs) ends with the same validation metrics."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(config(database, tmp_path / "ddp", batch_size=5)))
    script = tmp_path / "step.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    torchrun = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2"]
    subprocess.run([str(BIN / "python"), str(script), str(cfg), str(tmp_path / "one.pt")], check=True, env=env,
                   capture_output=True)
    subprocess.run(torchrun + [str(script), str(cfg), str(tmp_path / "two.pt")], check=True, env=env,
                   capture_output=True)
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-12)
    assert any(a is not None and bool(a.abs().max() > 0) for a in one["grads"])
    for a, b in zip(one["grads"], two["grads"]):  # None: a parameter the energy does not depend on
        torch.testing.assert_close(b, a if a is not None else torch.zeros_like(b), rtol=1e-10, atol=1e-12)

    single = config(database, tmp_path / "single", batch_size=5)
    (tmp_path / "single.yaml").write_text(yaml.safe_dump(single))
    subprocess.run([str(BIN / "python"), "-m", "workflows.cli", "train", str(tmp_path / "single.yaml")], check=True,
                   env=env, cwd=ROOT, capture_output=True)
    run = subprocess.run(torchrun + ["-m", "workflows.cli", "train", str(cfg)], env=env, cwd=ROOT,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    for a, b in zip(_metrics(tmp_path / "single"), _metrics(tmp_path / "ddp")):
        for key in a:
            assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-8, nan_ok=True), key


def test_tensorboard_log(tmp_path: Path, database: Path) -> None:
    pytest.importorskip("tensorboard")
    train(from_dict(config(database, tmp_path / "run", epochs=1, tensorboard=True)))
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
