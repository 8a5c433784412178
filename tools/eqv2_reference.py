"""Parity of our EquiformerV2 with the reference (fairchem-core 1.10.0), and the golden fixtures for CI.

The reference is not a dependency of equicalc. To run this script, make it importable beside the
project's environment, for example:

    pip install --no-deps --target /tmp/fairchem fairchem-core==1.10.0 torch_geometric
    pip install --no-build-isolation --target /tmp/fairchem torch-scatter
    PYTHONPATH=/tmp/fairchem python tools/eqv2_reference.py --config small --write-fixtures
    PYTHONPATH=/tmp/fairchem python tools/eqv2_reference.py --config 31M

It builds the reference model with random weights, evaluates it on OC20-like slabs with adsorbates
while recording the random edge frames it draws, loads the same weights into our implementation
through the fairchem checkpoint importer, feeds it the same frames, and prints the largest
deviations. With ``--write-fixtures`` (small config only) it writes the reference checkpoint and the
inputs, frames and outputs to ``tests/fixtures/`` for ``tests/test_equiformer_v2_parity.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from ase import Atoms
from ase.build import add_adsorbate, fcc100, fcc111, molecule

CONFIGS = {
    "small": dict(num_layers=2, lmax_list=[3], mmax_list=[2], sphere_channels=32, attn_hidden_channels=32,
                  num_heads=4, attn_alpha_channels=8, attn_value_channels=8, ffn_hidden_channels=32,
                  edge_channels=32),
    "31M": dict(num_layers=8, lmax_list=[4], mmax_list=[2], sphere_channels=128, attn_hidden_channels=64,
                num_heads=8, attn_alpha_channels=64, attn_value_channels=16, ffn_hidden_channels=128,
                edge_channels=128),
}
COMMON = dict(use_pbc=True, regress_forces=True, otf_graph=True, max_neighbors=20, max_radius=12.0,
              max_num_elements=90, norm_type="layer_norm_sh", grid_resolution=18, num_sphere_samples=128,
              use_atom_edge_embedding=True, share_atom_edge_embedding=False, use_m_share_rad=False,
              distance_function="gaussian", num_distance_basis=512, attn_activation="silu",
              use_s2_act_attn=False, use_attn_renorm=True, ffn_activation="silu", use_gate_act=False,
              use_grid_mlp=True, use_sep_s2_act=True, alpha_drop=0.1, drop_path_rate=0.1, proj_drop=0.0,
              weight_init="uniform")
NORMALIZERS = {"target": {"mean": torch.tensor(-0.7554450631141663), "std": torch.tensor(2.887317180633545)},
               "grad_target": {"mean": torch.tensor(0.0), "std": torch.tensor(2.887317180633545)}}
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
sys.path.insert(0, str(ROOT))


def structures() -> list[Atoms]:
    """OC20-like slabs with adsorbates, rattled so no neighbour distances tie."""
    out = []
    for k, (builder, metal, ads) in enumerate([(fcc111, "Cu", "CO"), (fcc100, "Pt", "OH"), (fcc111, "Ag", "H2O")]):
        slab = builder(metal, (2, 2, 3), vacuum=8.0)
        add_adsorbate(slab, molecule(ads), 2.0, "ontop")
        slab.rattle(0.05, seed=k)
        slab.pbc = True
        out.append(slab)
    return out


def reference_model(config: dict, seed: int):
    from fairchem.core.models.equiformer_v2.equiformer_v2_deprecated import EquiformerV2

    torch.manual_seed(seed)
    model = EquiformerV2(**COMMON, **config).eval()
    with torch.no_grad():  # move every weight off its initial value (norm scales start at one)
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def reference_batch(atoms_list: list[Atoms]):
    from torch_geometric.data import Batch, Data

    data = [
        Data(pos=torch.tensor(a.positions, dtype=torch.float32), atomic_numbers=torch.tensor(a.numbers),
             cell=torch.tensor(a.cell.array, dtype=torch.float32)[None], natoms=torch.tensor([len(a)]),
             pbc=torch.tensor([a.pbc.tolist()]), tags=torch.zeros(len(a), dtype=torch.long),
             fixed=torch.zeros(len(a)))
        for a in atoms_list
    ]
    return Batch.from_data_list(data)


def run_reference(model, atoms_list: list[Atoms]) -> dict:
    """Reference outputs and the edge frames it drew: per edge, its vector and second frame axis."""
    from fairchem.core.models.equiformer_v2.edge_rot_mat import init_edge_rot_mat

    recorded = {}

    def record(data, edge_index, edge_vec):
        frames = init_edge_rot_mat(edge_vec)
        recorded["vectors"], recorded["axes"], recorded["centres"] = edge_vec.detach(), frames[:, 2], edge_index[1]
        return frames

    model._init_edge_rot_mat = record
    with torch.no_grad():
        out = model(reference_batch(atoms_list))
    return {"energy": out["energy"].detach().flatten(), "forces": out["forces"].detach(), **recorded}


def fairchem_checkpoint(model, config: dict) -> dict:
    state = {f"module.module.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    return {"config": {"model": {"name": "equiformer_v2", **COMMON, **config}, "trainer": "equiformerv2_forces"},
            "state_dict": state, "normalizers": NORMALIZERS}


def run_ours(checkpoint_path: Path, atoms_list: list[Atoms], reference: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Our energies and forces for the same weights, with the reference's edge frames."""
    from tools.eqv2_frames import frames_from_reference

    from equicalc import SystemBatch, predict
    from potentials import load_checkpoint

    model = load_checkpoint(checkpoint_path)
    systems = SystemBatch.from_atoms(atoms_list, dtype=torch.float32, device="cpu")
    with frames_from_reference(reference["vectors"], reference["axes"]):
        out = predict(model, systems, forces=True, stress=False)
    return out.energy.detach(), out.forces.detach()


def rotated(atoms_list: list[Atoms], seed: int) -> list[Atoms]:
    from scipy.spatial.transform import Rotation

    rotation = Rotation.random(random_state=seed).as_matrix()
    out = []
    for atoms in atoms_list:
        moved = atoms.copy()
        moved.positions = atoms.positions @ rotation.T
        moved.cell = atoms.cell.array @ rotation.T
        out.append(moved)
    return out


def invariance_report(model, config: dict, checkpoint_path: Path, atoms_list: list[Atoms]) -> None:
    """Largest change of the energy under random rotations of float32 networks, for the reference
    (new random frames each call), ours in compatible mode, and ours in conservative mode with the
    same weights (deterministic frames, envelope, no cap). Both get the same structures; the
    reference rounds coordinates to float32, ours keeps geometry in float64 as its calculator does.

    The three report the same quantity: the un-normalised energy, the sum of the energy head's node
    outputs (the reference divides it by ``avg_num_nodes``; compatible mode also applies the output
    normaliser, which is switched off here; conservative mode subtracts constant isolated-atom
    terms). Relative errors |dE| / |E| are printed too, but E sums node outputs of both signs and
    differs between the modes (the envelope and the uncapped neighbours change it), so only the
    absolute change compares the three.
    """
    import dataclasses

    from equicalc import SystemBatch, predict
    from potentials import EquiformerV2, load_checkpoint

    loaded = load_checkpoint(checkpoint_path)
    avg_num_nodes = loaded.config.avg_num_nodes
    compatible = EquiformerV2(dataclasses.replace(loaded.config, energy_mean=0.0, energy_std=1.0))
    compatible.load_state_dict(loaded.state_dict())
    conservative = EquiformerV2(dataclasses.replace(loaded.config, mode="conservative", max_neighbors=None))
    conservative.load_state_dict(loaded.state_dict(), strict=False)  # everything but the force head

    def ours(m, scale: float):
        def energy(structures):
            # as the calculator runs a float32 model: geometry in float64, the network in float32
            systems = SystemBatch.from_atoms(structures, dtype=torch.float64, device="cpu")
            return scale * predict(m, systems, forces=False, stress=False).energy.detach().double()
        return energy

    def reference(structures):
        return avg_num_nodes * run_reference(model, structures)["energy"].double()

    for name, energy in (("reference", reference), ("ours, compatible", ours(compatible, avg_num_nodes)),
                         ("ours, conservative", ours(conservative, 1.0))):
        base = energy(atoms_list)
        change = torch.stack([(energy(rotated(atoms_list, k)) - base).abs() for k in range(3)])
        print(f"rotation invariance, {name:20s}: max |dE| = {change.max().item():.2e} (node-output units), "
              f"max |dE| / |E| = {(change / base.abs()).max().item():.2e}, |E| = {base.abs().min().item():.3f}.."
              f"{base.abs().max().item():.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=list(CONFIGS), default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-fixtures", action="store_true")
    parser.add_argument("--invariance", action="store_true", help="also report rotation-invariance errors")
    args = parser.parse_args()
    config = CONFIGS[args.config]
    atoms_list = structures()
    model = reference_model(config, args.seed)
    reference = run_reference(model, atoms_list)
    FIXTURES.mkdir(exist_ok=True)
    path = FIXTURES / "eqv2_small_fairchem.pt" if args.write_fixtures else Path(f"/tmp/eqv2_{args.config}_fairchem.pt")
    torch.save(fairchem_checkpoint(model, config), path)
    energy, forces = run_ours(path, atoms_list, reference)
    mean, std = NORMALIZERS["target"]["mean"], NORMALIZERS["target"]["std"]
    ref_energy, ref_forces = std * reference["energy"] + mean, std * reference["forces"]
    e_rel = ((energy - ref_energy).abs() / ref_energy.abs()).max().item()
    f_rel = ((forces - ref_forces).abs().max() / ref_forces.abs().max()).item()
    print(f"config {args.config}: {len(atoms_list)} structures, {len(reference['vectors'])} edges")
    print(f"energy: ours {energy.tolist()} reference {ref_energy.tolist()}; max relative deviation {e_rel:.2e}")
    print(f"forces: max |dF| / max |F| = {f_rel:.2e} (max |F| {ref_forces.abs().max().item():.3e} eV/Å)")
    if args.invariance:
        invariance_report(model, config, path, atoms_list)
    if args.write_fixtures:
        golden = {
            "numbers": [torch.tensor(a.numbers) for a in atoms_list],
            "positions": [torch.tensor(a.positions) for a in atoms_list],
            "cells": [torch.tensor(a.cell.array) for a in atoms_list],
            "edge_vectors": reference["vectors"], "edge_axes": reference["axes"],
            "energy": ref_energy, "forces": ref_forces,
        }
        torch.save(golden, FIXTURES / "eqv2_small_golden.pt")
        print(f"wrote {path} and {FIXTURES / 'eqv2_small_golden.pt'}")


if __name__ == "__main__":
    main()
