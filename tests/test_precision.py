"""Precision kept between building, saving, loading and evaluating a model (issue 11, item 1)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.lj import LennardJones as AseLennardJones

from equicalc import EquiCalculator, SystemBatch, predict
from potentials import (
    EGNN,
    SAKE,
    EGNNConfig,
    EquiformerV2,
    EquiformerV2Config,
    LennardJones,
    LennardJonesConfig,
    Potential,
    SAKEConfig,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from potentials.nn import default_dtype

HCO = (1, 6, 8)
#: large DFT-like reference energies [eV]: H, C, O
E0 = (-13.6, -1029.5, -2043.9)
EQV2 = dict(cutoff=4.0, elements=HCO, num_layers=1, lmax=2, mmax=1, sphere_channels=8, attn_hidden_channels=8,
            num_heads=2, attn_alpha_channels=4, attn_value_channels=2, ffn_hidden_channels=8, edge_channels=8,
            num_distance_basis=16)

#: one small model of every architecture and mode, built with the given reference energies
ARCHITECTURES: dict[str, Callable[[tuple[float, ...] | None], Potential]] = {
    "lennard_jones": lambda e0: LennardJones(LennardJonesConfig(sigma=1.2, epsilon=0.05, cutoff=4.0, elements=HCO,
                                                                atomic_energies=e0)),
    "egnn": lambda e0: EGNN(EGNNConfig(cutoff=4.0, elements=HCO, hidden=16, layers=2, atomic_energies=e0)),
    "sake": lambda e0: SAKE(SAKEConfig(cutoff=4.0, elements=HCO, hidden=16, layers=2, heads=2, num_rbf=8,
                                       atomic_energies=e0)),
    "equiformer_v2 conservative": lambda e0: EquiformerV2(EquiformerV2Config(**EQV2, atomic_energies=e0)),
    "equiformer_v2 compatible": lambda e0: EquiformerV2(EquiformerV2Config(**EQV2, mode="compatible", max_neighbors=12)),
}


def hco_box(n: int = 60, seed: int = 0) -> Atoms:
    """A periodic H/C/O box of ``n`` atoms, no two closer than 0.9 Å."""
    rng = np.random.default_rng(seed)
    cell = 9.0 * np.eye(3)
    positions: list[np.ndarray] = []
    while len(positions) < n:
        p = rng.uniform(0, 9.0, 3)
        if all(np.linalg.norm((p - q + 4.5) % 9.0 - 4.5) > 0.9 for q in positions):
            positions.append(p)
    return Atoms(numbers=rng.choice(HCO, n), positions=positions, cell=cell, pbc=True)


def evaluate(model: Potential, atoms: Atoms, dtype: torch.dtype) -> tuple[np.ndarray, ...]:
    """Energy, forces and stress of ``atoms`` through ``predict``, geometry in float64."""
    out = predict(model, SystemBatch.from_atoms(atoms, dtype=torch.float64, device="cpu"), forces=True, stress=True)
    return tuple(t.detach().numpy() for t in (out.energy, out.forces, out.stress))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_checkpoint_round_trip_is_bit_identical(tmp_path: Path, name: str, dtype: torch.dtype) -> None:
    """A model built in ``dtype`` comes back from its checkpoint in ``dtype`` with the same bits."""
    torch.manual_seed(0)
    with default_dtype(dtype):
        model = ARCHITECTURES[name](E0 if "compatible" not in name else None).eval()
    path = save_checkpoint(model, tmp_path / "model.pt")
    loaded = load_checkpoint(path)
    assert loaded.dtype == dtype
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)
    atoms = hco_box(12)
    for before, after in zip(evaluate(model, atoms, dtype), evaluate(loaded, atoms, dtype), strict=True):
        np.testing.assert_array_equal(before, after)
    through_calculator = hco_box(12)
    through_calculator.calc = EquiCalculator(path, device="cpu", dtype=dtype)
    assert through_calculator.get_potential_energy() == float(evaluate(model, atoms, dtype)[0][0])


@pytest.mark.parametrize("name", [n for n in ARCHITECTURES if "compatible" not in n])
def test_reference_energies_are_exact_float64(name: str) -> None:
    """An isolated atom has exactly its reference energy, whatever precision the network was built in."""
    with default_dtype(torch.float32):
        model = ARCHITECTURES[name](E0)
    assert model.atomic_energies.dtype == torch.float64
    for dtype in ("float32", "float64"):
        atoms = Atoms("O", positions=[[0.1, 0.2, 0.3]])
        atoms.calc = EquiCalculator(model, device="cpu", dtype=dtype)
        assert atoms.get_potential_energy() == -2043.9


@pytest.mark.parametrize("name", ["egnn", "sake", "equiformer_v2 conservative"])
def test_float32_network_with_large_reference_energies(name: str) -> None:
    """A float32 network errs against float64 by as much with DFT-size reference energies as without:
    the reference energies are summed in the geometry's float64, not in the network's float32."""
    torch.manual_seed(0)
    model = ARCHITECTURES[name](E0)
    torch.manual_seed(0)
    bare = ARCHITECTURES[name](None)
    atoms = hco_box()

    def error(m: Potential) -> float:
        energies = {}
        for dtype in ("float32", "float64"):
            probe = atoms.copy()
            probe.calc = EquiCalculator(m, device="cpu", dtype=dtype)
            energies[dtype] = probe.get_potential_energy()
        return abs(energies["float32"] - energies["float64"])

    bare_error = error(bare)
    assert error(model) < 2 * bare_error + 1e-9, f"float32 error {error(model):.2e} eV vs {bare_error:.2e} eV without E0s"


def test_energy_change_of_a_small_displacement_in_float32() -> None:
    """A 0.01 Å move changes a float32 EGNN's energy as float64 says, E0s of -2000 eV or not."""
    torch.manual_seed(0)
    model = ARCHITECTURES["egnn"](E0)
    atoms = hco_box()
    moved = atoms.copy()
    moved.positions[0] += [0.01, 0.0, 0.0]
    changes = {}
    for dtype in ("float32", "float64"):
        calc = EquiCalculator(model, device="cpu", dtype=dtype)
        changes[dtype] = calc.get_potential_energy(moved) - calc.get_potential_energy(atoms)
    assert abs(changes["float32"] - changes["float64"]) < 1e-2 * abs(changes["float64"]) + 1e-6


def test_a_calculator_never_changes_the_callers_model() -> None:
    """Two calculators of one model in different precisions: each keeps its own, the model its own."""
    model = load_model("lj-argon")
    before = {k: (v.dtype, v.device) for k, v in model.state_dict().items()}
    dtype_before = model.dtype
    c64 = EquiCalculator(model, device="cpu", dtype="float64")
    c32 = EquiCalculator(model, device="cpu", dtype="float32")
    assert model.dtype == dtype_before and {k: (v.dtype, v.device) for k, v in model.state_dict().items()} == before
    assert c64.model.dtype == torch.float64 and c32.model.dtype == torch.float32
    atoms = Atoms("Ar", positions=[[0.3, 0.2, 0.1]], cell=3.9 * np.eye(3), pbc=True)
    oracle = AseLennardJones(sigma=3.405, epsilon=model.config.epsilon, rc=8.5, smooth=True)
    expected = oracle.get_potential_energy(atoms)
    assert abs(c64.get_potential_energy(atoms) - expected) < 1e-11
    training = load_model("lj-argon").train()
    EquiCalculator(training, device="cpu", dtype="float64")
    assert training.training


def test_a_model_already_in_the_right_precision_is_shared() -> None:
    """No needless copy: a model already on the calculator's device and dtype, in eval mode, is used as is."""
    model = load_model("lj-argon").to(torch.float64).eval()
    assert EquiCalculator(model, device="cpu", dtype="float64").model is model



@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_stress_after_an_energy_only_call(name: str, dtype: torch.dtype) -> None:
    """A direct-force model answers energy and forces under inference mode; constants cached then
    (cast to float32) must still serve a later stress call, and leave the model usable afterwards."""
    torch.manual_seed(0)
    model = ARCHITECTURES[name](None).to(dtype).eval()
    atoms = hco_box(12)
    atoms.calc = EquiCalculator(model, device="cpu", dtype=dtype)
    atoms.get_potential_energy()
    stress = atoms.get_stress()
    again = hco_box(12)
    again.calc = EquiCalculator(model, device="cpu", dtype=dtype)
    np.testing.assert_allclose(again.get_stress(), stress, rtol=1e-5, atol=1e-9)


def test_compatible_mode_adds_reference_energies() -> None:
    """Reference energies are added in compatible mode too, not silently ignored."""
    torch.manual_seed(0)
    bare = ARCHITECTURES["equiformer_v2 compatible"](None).double()
    config = dict(EQV2, mode="compatible", max_neighbors=12, atomic_energies=E0)
    torch.manual_seed(0)
    referenced = EquiformerV2(EquiformerV2Config(**config)).double()
    atoms = hco_box(12)
    energies = [evaluate(m, atoms, torch.float64)[0][0] for m in (bare, referenced)]
    expected = sum(dict(zip(HCO, E0))[z] for z in atoms.numbers)
    assert abs(energies[1] - energies[0] - expected) < 1e-9
