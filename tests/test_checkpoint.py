"""Checkpoints: round trip, safe loading, and clear errors for anything else."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from ase.build import molecule

from equicalc import EquiCalculator
from potentials import EGNN, CheckpointError, ConfigError, EGNNConfig, build, load_checkpoint, save_checkpoint


def small_egnn() -> EGNN:
    torch.manual_seed(0)
    return EGNN(EGNNConfig(cutoff=4.0, elements=(1, 6, 8), hidden=8, layers=2, atomic_energies=(-1.0, -2.0, -3.0)))


def test_round_trip_gives_identical_predictions(tmp_path: Path) -> None:
    model = small_egnn()
    path = save_checkpoint(model, tmp_path / "egnn.pt", name="egnn-test", training={"epochs": 3, "data": "none"})
    loaded = load_checkpoint(path)
    assert loaded.metadata["name"] == "egnn-test"
    assert loaded.metadata["cutoff"] == 4.0 and loaded.metadata["elements"] == [1, 6, 8]
    assert loaded.metadata["training"] == {"epochs": 3, "data": "none"}
    energies = []
    for spec in (model, str(path)):
        atoms = molecule("CH3OH")
        atoms.calc = EquiCalculator(spec, device="cpu")
        energies.append(atoms.get_potential_energy())
    assert energies[0] == energies[1]
    assert EquiCalculator(str(path), device="cpu").todict()["model"] == str(path)


def test_payload_loads_in_weights_only_mode(tmp_path: Path) -> None:
    path = save_checkpoint(small_egnn(), tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "equicalc-checkpoint" and payload["architecture"] == "egnn"


def test_corrupt_file(tmp_path: Path) -> None:
    path = save_checkpoint(small_egnn(), tmp_path / "m.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)


def test_not_a_torch_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.pt"
    path.write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        EquiCalculator(path)


def test_foreign_torch_file(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match="not an equicalc checkpoint"):
        load_checkpoint(path)


def test_other_format_version(tmp_path: Path) -> None:
    path = save_checkpoint(small_egnn(), tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(path)


def test_weights_that_do_not_match_the_config(tmp_path: Path) -> None:
    path = save_checkpoint(small_egnn(), tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    payload["config"]["hidden"] = 16
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(path)


class _Exploit:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_hostile_pickle_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "equicalc-checkpoint", "payload": _Exploit()}, path, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(CheckpointError, match="objects a safe checkpoint may not contain"):
        load_checkpoint(path)
    assert "must never run" not in capsys.readouterr().out


def test_missing_file() -> None:
    with pytest.raises(FileNotFoundError):
        load_checkpoint("/nonexistent/model.pt")


def test_unknown_architecture_and_bad_config() -> None:
    with pytest.raises(ConfigError, match="unknown architecture 'nope'"):
        build("nope", {})
    with pytest.raises(ConfigError, match="invalid config for 'egnn'"):
        build("egnn", {"cutoff": 4.0, "elements": [1], "widht": 3})
    with pytest.raises(ConfigError, match="cutoff must be positive"):
        build("egnn", {"cutoff": -1.0, "elements": [1]})


def test_checkpoints_written_before_float64_reference_energies_still_load(tmp_path: Path) -> None:
    """Files of the same format version written before this release hold float32 reference energies,
    no ``dtype`` entry and no ``enforce_max_neighbors_strictly`` (their cap was strict): they load, with
    the reference energies of their configuration and the strict cap."""
    torch.manual_seed(0)
    model = EGNN(EGNNConfig(cutoff=4.0, elements=(1, 6, 8), hidden=8, layers=2, max_neighbors=6,
                            enforce_max_neighbors_strictly=True, atomic_energies=(-13.6, -1029.5, -2043.9)))
    path = save_checkpoint(model, tmp_path / "old.pt")
    payload = torch.load(path, weights_only=True)
    del payload["dtype"], payload["config"]["enforce_max_neighbors_strictly"]
    payload["state_dict"]["atomic_energies"] = payload["state_dict"]["atomic_energies"].float()
    torch.save(payload, path)
    loaded = load_checkpoint(path)
    assert loaded.config.enforce_max_neighbors_strictly and loaded.atomic_energies.dtype == torch.float64
    atoms = molecule("CH3OH")
    energies = [EquiCalculator(m, device="cpu").get_potential_energy(atoms) for m in (model, loaded)]
    assert energies[0] == energies[1]
