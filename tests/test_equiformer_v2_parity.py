"""Parity with the reference EquiformerV2 (fairchem-core 1.10.0) on golden fixtures.

``tools/eqv2_reference.py --config small --write-fixtures`` wrote the fixtures from the reference
itself: a fairchem-format checkpoint with random weights (small config: L = 3, M = 2, 2 layers,
32 channels, 12 Å, 20 neighbours) and, for three OC20-like slabs with adsorbates, the inputs, the
random edge frames the reference drew, and its de-normalised energies and direct forces. Neither
fairchem nor any download is needed here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ase import Atoms

from equicalc import EquiCalculator, SystemBatch, predict
from potentials import load_checkpoint
from tools.eqv2_frames import frames_from_reference

FIXTURES = Path(__file__).parent / "fixtures"


def golden() -> tuple[dict, list[Atoms]]:
    data = torch.load(FIXTURES / "eqv2_small_golden.pt", weights_only=True)
    atoms = [Atoms(numbers=z.numpy(), positions=r.numpy(), cell=c.numpy(), pbc=True)
             for z, r, c in zip(data["numbers"], data["positions"], data["cells"])]
    return data, atoms


def test_energies_and_forces_match_the_reference() -> None:
    data, atoms = golden()
    model = load_checkpoint(FIXTURES / "eqv2_small_fairchem.pt")
    assert model.config.mode == "compatible" and model.config.max_neighbors == 20 and model.cutoff == 12.0
    systems = SystemBatch.from_atoms(atoms, dtype=torch.float32, device="cpu")
    with frames_from_reference(data["edge_vectors"], data["edge_axes"]):
        out = predict(model, systems, forces=True, stress=False)
    energy_error = ((out.energy.detach() - data["energy"]).abs() / data["energy"].abs()).max()
    force_error = (out.forces.detach() - data["forces"]).abs().max() / data["forces"].abs().max()
    assert energy_error < 1e-5, f"energy relative deviation {energy_error:.2e}"
    assert force_error < 1e-5, f"force deviation {force_error:.2e} of max |F|"


def test_calculator_loads_the_fairchem_file_and_reports_direct_forces() -> None:
    data, atoms = golden()
    calc = EquiCalculator(FIXTURES / "eqv2_small_fairchem.pt", device="cpu", dtype="float32")
    slab = atoms[0]
    slab.calc = calc
    with frames_from_reference(data["edge_vectors"], data["edge_axes"]):
        energy = slab.get_potential_energy()
        forces = slab.get_forces()
    n = len(slab)
    assert abs(energy - data["energy"][0].item()) < 1e-5 * abs(energy)
    assert np.abs(forces - data["forces"][:n].numpy()).max() < 1e-5 * np.abs(data["forces"].numpy()).max()
    assert calc.model.direct_forces
