"""Bad input gets a ValueError that names the problem on every path into a model (issue 11, item 4)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from ase import Atoms

from equicalc import EquiCalculator, SystemBatch, predict
from equicalc.neighbors import radius_graph
from potentials import AtomGraph, CheckpointError, load_checkpoint, load_model, load_potential, save_checkpoint
from tests.test_precision import ARCHITECTURES


@pytest.fixture(params=list(ARCHITECTURES))
def model(request: pytest.FixtureRequest):
    torch.manual_seed(0)
    return ARCHITECTURES[request.param](None).to(torch.float64).eval()


COINCIDENT = {
    "two atoms at one place": (
        Atoms("COH", positions=[[0, 0, 0], [0, 0, 0], [1, 0.3, 0.2]]),
        r"atoms 0 \(C\) and 1 \(O\) coincide",
    ),
    "an atom on another's periodic image": (
        Atoms("COH", positions=[[0, 0, 0], [3.0, 0, 0], [1, 0.3, 0.2]], cell=3.0 * np.eye(3), pbc=True),
        r"atoms 0 \(C\) and 1 \(O\) coincide .*image",
    ),
}


@pytest.mark.parametrize("case", list(COINCIDENT))
def test_coincident_atoms_are_refused(model, case: str) -> None:
    atoms, message = COINCIDENT[case]
    atoms = atoms.copy()
    atoms.calc = EquiCalculator(model, device="cpu")
    for get in (atoms.get_potential_energy, atoms.get_forces):
        with pytest.raises(ValueError, match=message):
            get()
    with pytest.raises(ValueError, match=message):
        predict(model, SystemBatch.from_atoms(atoms, dtype=torch.float64, device="cpu"))


def test_coincident_atoms_named_by_system_in_a_batch() -> None:
    model = load_model("lj-argon").double()
    fine = Atoms("Ar2", positions=[[0, 0, 0], [3.5, 0, 0]])
    bad = Atoms("Ar3", positions=[[0, 0, 0], [3.5, 0, 0], [3.5, 0, 0]])
    with pytest.raises(ValueError, match=r"system 1: atoms 1 \(Ar\) and 2 \(Ar\) coincide"):
        predict(model, SystemBatch.from_atoms([fine, bad], dtype=torch.float64, device="cpu"))


@pytest.mark.parametrize("cell, message", [
    (np.array([[4.0, 0, 0], [0, np.nan, 0], [0, 0, 4.0]]), "NaN"),
    (np.array([[4.0, 0, 0], [0, 0, 0], [0, 0, 4.0]]), "zero-length"),
])
def test_stress_of_a_broken_cell_is_a_value_error(cell: np.ndarray, message: str) -> None:
    """The geometry is validated before deciding what can be computed: stress gets the same error as energy."""
    atoms = Atoms("Ar2", positions=[[0, 0, 0], [1.9, 1.9, 1.9]], cell=cell, pbc=True)
    atoms.calc = EquiCalculator("lj-argon", device="cpu")
    for get in (atoms.get_stress, atoms.get_potential_energy):
        with pytest.raises(ValueError, match=message):
            get()


def test_unknown_element_through_predict() -> None:
    """A He atom given to the Ar-only LJ model is refused by predict, not given another element's energy."""
    he = SystemBatch.from_atoms(Atoms("He", positions=[[0, 0, 0]]), dtype=torch.float64, device="cpu")
    with pytest.raises(ValueError, match=r"He \(Z=2\)"):
        predict(load_model("lj-argon"), he)


def test_unknown_element_straight_into_the_model(model) -> None:
    """The model itself refuses atomic numbers it does not know, also outside equicalc."""
    for z in (2, 0, 200):
        graph = AtomGraph(
            positions=torch.zeros((1, 3), dtype=torch.float64), numbers=torch.tensor([z]),
            cell=torch.zeros((1, 3, 3), dtype=torch.float64), pbc=torch.zeros((1, 3), dtype=torch.bool),
            batch=torch.zeros(1, dtype=torch.long), edge_index=torch.zeros((2, 0), dtype=torch.long),
            shifts=torch.zeros((0, 3), dtype=torch.float64),
        )
        with pytest.raises(ValueError, match=f"atomic number.*{z}"):
            model(graph)


def _set(payload: dict[str, Any], *keys: str, value: Any) -> dict[str, Any]:
    """``payload`` with the entry at ``keys`` set to ``value`` (the first entry when a key is None)."""
    entry = payload
    for key in keys[:-1]:
        entry = entry[key if key is not None else next(iter(entry))]
    entry[keys[-1] if keys[-1] is not None else next(iter(entry))] = value
    return payload


def _without_first_weight(payload: dict[str, Any]) -> dict[str, Any]:
    payload["state_dict"].pop(next(iter(payload["state_dict"])))
    return payload


def _narrowed_weights(payload: dict[str, Any]) -> dict[str, Any]:
    payload["state_dict"] = {k: v[..., :1] if v.dim() > 0 else v for k, v in payload["state_dict"].items()}
    return payload


MALFORMED = {
    "payload is a list": lambda p: [p],
    "state_dict is a list": lambda p: _set(p, "state_dict", value=[1, 2]),
    "state_dict is None": lambda p: _set(p, "state_dict", value=None),
    "a weight is a string": lambda p: _set(p, "state_dict", None, value="x"),
    "a weight has another shape": _narrowed_weights,
    "a weight is missing": _without_first_weight,
    "an extra weight": lambda p: _set(p, "state_dict", "extra", value=torch.zeros(2)),
    "config is a list": lambda p: _set(p, "config", value=[1]),
    "elements is a number": lambda p: _set(p, "config", "elements", value=5),
    "cutoff is a string": lambda p: _set(p, "config", "cutoff", value="far"),
    "atomic_energies has NaN": lambda p: _set(p, "config", "atomic_energies", value=[float("nan")] * 3),
    "architecture is a number": lambda p: _set(p, "architecture", value=3),
    "unknown architecture": lambda p: _set(p, "architecture", value="nope"),
    "metadata is a list": lambda p: _set(p, "metadata", value=[]),
    "dtype is unknown": lambda p: _set(p, "dtype", value="float16x"),
    "dtype is a list": lambda p: _set(p, "dtype", value=["float64"]),
    "dtype disagrees with the weights": lambda p: _set(p, "dtype", value="float64"),
    "a weight of integers": lambda p: _set(p, "state_dict", "embedding.weight",
                                           value=p["state_dict"]["embedding.weight"].long()),
    "format_version is 1.0": lambda p: _set(p, "format_version", value=1.0),
    "reference energies disagree": lambda p: _set(p, "state_dict", "atomic_energies",
                                                  value=torch.zeros(3, dtype=torch.float64)),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_every_malformed_checkpoint_is_a_checkpoint_error(tmp_path: Path, case: str) -> None:
    """Whatever part of a checkpoint is malformed, opening it raises CheckpointError, never a later
    TypeError or AttributeError."""
    torch.manual_seed(0)
    path = save_checkpoint(ARCHITECTURES["egnn"]((-1.0, -2.0, -3.0)), tmp_path / "m.pt")
    torch.save(MALFORMED[case](torch.load(path, weights_only=True)), path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    with pytest.raises(CheckpointError):
        EquiCalculator(path, device="cpu")


def test_graph_of_coincident_atoms_still_builds() -> None:
    """The radius graph itself accepts coincident atoms (a zero-length edge): the check is the evaluator's."""
    pos = torch.zeros((2, 3), dtype=torch.float64)
    edge_index, _ = radius_graph(pos, torch.zeros((1, 3, 3), dtype=torch.float64), torch.zeros((1, 3), dtype=torch.bool),
                                 torch.zeros(2, dtype=torch.long), 2.0)
    assert edge_index.shape[1] == 2


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_save_refuses_what_load_could_not_give_back(tmp_path: Path, dtype: torch.dtype) -> None:
    model = ARCHITECTURES["egnn"](None)
    with pytest.raises(ValueError, match="float32 or float64"):
        save_checkpoint(model.to(dtype), tmp_path / "half.pt")
    with pytest.raises(ValueError, match="JSON-friendly"):
        save_checkpoint(ARCHITECTURES["egnn"](None), tmp_path / "m.pt", training={"optimizer": object()})
    with pytest.raises(TypeError, match="needs a Potential"):
        save_checkpoint(torch.nn.Linear(2, 2), tmp_path / "m.pt")  # type: ignore[arg-type]


@pytest.mark.parametrize("atoms, message", [
    (Atoms("COH", positions=[[0, 0, 0], [0, 0, 0], [1, 0.3, 0.2]]), "coincide"),
    (Atoms("ArHe", positions=[[0, 0, 0], [2, 0, 0]]), r"He \(Z=2\)"),
    (Atoms("Ar", positions=[[0, 0, 0]], cell=1e-4 * np.eye(3), pbc=True), "too small"),
])
def test_stress_reports_bad_input_before_a_missing_property(atoms: Atoms, message: str) -> None:
    """Bad input is a ValueError also from get_stress(), never PropertyNotImplementedError."""
    atoms.numbers[atoms.numbers != 2] = 18  # every atom argon (lj-argon's element) but the He
    atoms.calc = EquiCalculator("lj-argon", device="cpu")
    with pytest.raises(ValueError, match=message):
        atoms.get_stress()


@pytest.mark.parametrize("spec, error, message", [
    ("x" * 5000, ValueError, "neither a checkpoint file nor a registered model"),
    ("/", ValueError, "is a directory"),
    (None, TypeError, "must be a Potential"),
])
def test_load_potential_names_what_it_cannot_load(spec: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        load_potential(spec)  # type: ignore[arg-type]


@pytest.mark.parametrize("device", ["gpu", "meta", "mps", "cuda:-1", None])
def test_unknown_device_is_a_value_error(device: object) -> None:
    with pytest.raises(ValueError, match="device"):
        EquiCalculator("lj-argon", device=device)  # type: ignore[arg-type]


def test_a_text_file_is_not_a_torch_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.pt"
    path.write_text("x\n")
    with pytest.raises(CheckpointError, match=r"not a readable checkpoint \(not a torch file\)$"):
        load_checkpoint(path)
