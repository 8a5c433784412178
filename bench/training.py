"""Cost of one training step on forces against one energy+forces evaluation, for every model.

Batch: 8 Cu(111) 3x3x3 slabs with an O adatom in an fcc hollow (28 atoms each, periodic), rattled
0.05 Å; float32 networks, float64 geometry, 6 Å cutoff. For each model: its parameters, the
energy+forces time (``predict(model, batch, stress=False)``), the training-step time
(``predict(create_graph=True)``, loss = MSE of the energy per atom + MSE of the forces against EMT
labels, ``loss.backward()``, one AdamW step) and the ratio step / (E+F), which the goal wants at
most 3; then the same step with ``loss.backward(inputs=parameters)``, which spares the gradient
with respect to the positions (a leaf that ``loss.backward()`` fills, of no use to a trainer). The
three are measured alternately (one after the other, ``--repeats`` times, after one warm-up each)
so that the machine's drift hits all alike; each model runs in a fresh process.

SevenNet (the ``sevenn`` package, when importable) runs the same way with its own batching and its
trainer's step: ``model.train()`` makes its force output keep the graph. Its graphs are built
once, outside the timing, as its trainer's dataset does (our ``predict`` searches neighbours on
every call: a few ms here, LJ's whole E+F); its evaluation also returns the stress (from the same
edge gradients).

    python bench/training.py [--repeats 5] [--models lj egnn ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from isolated import run_isolated  # noqa: E402

CUTOFF = 6.0
ELEMENTS = (8, 29)
GOAL = 3.0
SMALL_EQUIFORMER = dict(cutoff=CUTOFF, elements=ELEMENTS, num_layers=3, lmax=2, mmax=1, sphere_channels=32,
                        attn_hidden_channels=32, num_heads=4, attn_alpha_channels=16, attn_value_channels=8,
                        ffn_hidden_channels=32, edge_channels=32)
#: name: (architecture, config, description)
MODELS = {
    "lj": ("lennard_jones", dict(sigma=2.338, epsilon=0.409, cutoff=CUTOFF), "Lennard-Jones (Cu)"),
    "egnn": ("egnn", dict(cutoff=CUTOFF, elements=ELEMENTS, hidden=32, layers=3), "EGNN, hidden 32, 3 layers"),
    "sake": ("sake", dict(cutoff=CUTOFF, elements=ELEMENTS, hidden=32, layers=3, heads=2),
             "SAKE, hidden 32, 3 layers, 2 heads"),
    "equiformer_v2": ("equiformer_v2", SMALL_EQUIFORMER,
                      "EquiformerV2 conservative, lmax 2, mmax 1, 3 layers, 32 channels, grid 18 (default)"),
    "equiformer_v2-grid8": ("equiformer_v2", {**SMALL_EQUIFORMER, "grid_resolution": 8},
                            "the same, grid_resolution 8 (recommended for training)"),
    "sevennet": ("sevenn", {}, "SevenNet (sevenn base preset): 32 channels, lmax 2, 3 layers, no parity"),
}


def batch():
    """The 8 slabs, with EMT energies and forces as labels."""
    from ase.build import add_adsorbate, fcc111
    from ase.calculators.emt import EMT

    out = []
    for k in range(8):
        atoms = fcc111("Cu", (3, 3, 3), vacuum=8.0, periodic=True)
        add_adsorbate(atoms, "O", 1.2, "fcc")
        atoms.rattle(0.05, seed=k)
        atoms.calc = EMT()
        atoms.info["labels"] = (atoms.get_potential_energy(), atoms.get_forces())
        out.append(atoms)
    return out


def ours(name: str) -> tuple[int, Callable[[], None], Callable[[bool], None]]:
    """Parameter count, energy+forces and training-step closures of one of our models (the step's
    argument: backward to the parameters only)."""
    import torch

    from equicalc import SystemBatch, predict
    from potentials import build

    architecture, config, _ = MODELS[name]
    torch.manual_seed(0)
    model = build(architecture, config).to(torch.float32)
    atoms = batch()
    systems = SystemBatch.from_atoms(atoms, dtype=torch.float64, device="cpu")
    energy = torch.tensor([a.info["labels"][0] for a in atoms], dtype=torch.float64)
    forces = torch.cat([torch.as_tensor(a.info["labels"][1]) for a in atoms])
    n_atoms = torch.bincount(systems.batch).to(torch.float64)
    parameters = list(model.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=1e-4) if parameters else None  # LJ has none

    def energy_forces() -> None:
        predict(model, systems, stress=False).forces.sum().item()

    def step(parameters_only: bool) -> None:
        if optimizer is not None:
            optimizer.zero_grad()
        out = predict(model, systems, stress=False, create_graph=True)
        loss = ((out.energy - energy) / n_atoms).square().mean() + (out.forces - forces).square().mean()
        loss.backward(inputs=parameters if parameters_only and parameters else None)
        if optimizer is not None:
            optimizer.step()

    return sum(p.numel() for p in parameters), energy_forces, step


def sevennet() -> tuple[int, Callable[[], None], Callable[[bool], None]]:
    """The same for a SevenNet model built from sevenn's base preset (cutoff 6 Å), batched as its
    trainer batches (torch_geometric), with its loss of the same form."""
    import sevenn._keys as KEY
    import torch
    from sevenn import _const, util
    from sevenn.atom_graph_data import AtomGraphData
    from sevenn.model_build import build_E3_equivariant_model
    from sevenn.train.dataload import unlabeled_atoms_to_graph
    from torch_geometric.data import Batch

    config = {**_const.DEFAULT_E3_EQUIVARIANT_MODEL_CONFIG, **util.chemical_species_preprocess(["Cu", "O"])}
    config.update({  # presets/base.yaml, cutoff 6 Å; a fixed denominator and no shift or scale (no dataset)
        KEY.CUTOFF: CUTOFF, KEY.NODE_FEATURE_MULTIPLICITY: 32, KEY.LMAX: 2, KEY.NUM_CONVOLUTION: 3,
        KEY.IS_PARITY: False, KEY.CONV_DENOMINATOR: 50.0, KEY.SHIFT: 0.0, KEY.SCALE: 1.0,
        KEY.RADIAL_BASIS: {KEY.RADIAL_BASIS_NAME: "bessel", KEY.BESSEL_BASIS_NUM: 8},
        KEY.CUTOFF_FUNCTION: {KEY.CUTOFF_FUNCTION_NAME: "poly_cut", KEY.POLY_CUT_P: 6},
    })
    torch.manual_seed(0)
    model = build_E3_equivariant_model(config)
    model.set_is_batch_data(True)
    atoms = batch()
    data = Batch.from_data_list([AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(a, CUTOFF)) for a in atoms])
    energy = torch.tensor([a.info["labels"][0] for a in atoms], dtype=torch.float32)
    forces = torch.cat([torch.as_tensor(a.info["labels"][1], dtype=torch.float32) for a in atoms])
    parameters = [p for p in model.parameters() if p.requires_grad]  # not its fixed shift, scale, denominator
    optimizer = torch.optim.AdamW(parameters, lr=1e-4)

    def energy_forces() -> None:
        model.eval()
        model(data.clone())[KEY.PRED_FORCE].sum().item()

    def step(parameters_only: bool) -> None:
        model.train()
        optimizer.zero_grad()
        out = model(data.clone())
        loss = ((out[KEY.PRED_TOTAL_ENERGY] - energy) / 28).square().mean()
        loss = loss + (out[KEY.PRED_FORCE] - forces).square().mean()
        loss.backward(inputs=parameters if parameters_only else None)
        optimizer.step()

    return sum(p.numel() for p in parameters), energy_forces, step


def measure(name: str, repeats: int) -> dict:
    """Alternating energy+forces and training-step wall times [s] of one model, after a warm-up."""
    parameters, energy_forces, step = sevennet() if name == "sevennet" else ours(name)
    runs = {"ef": energy_forces, "step": lambda: step(False), "step_parameters": lambda: step(True)}
    for fn in runs.values():
        fn()
    times: dict[str, list[float]] = {key: [] for key in runs}
    for _ in range(repeats):
        for key, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    return {"parameters": parameters, **times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--one", nargs=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], args.repeats)))
        return
    import torch

    print(f"batch: 8 x (Cu(111) 3x3x3 + O) = 224 atoms, cutoff {CUTOFF} Å, float32 networks, float64 geometry; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; medians of {args.repeats} alternating "
          f"runs [min-max]; goal: step / (E+F) <= {GOAL:g}")
    print(f"{'model':20s} {'params':>9} {'E+F s':>20} {'train step s':>20} {'step/(E+F)':>10}  goal   "
          f"{'step, inputs=parameters':>23} {'ratio':>5}")
    for name in args.models:
        if name == "sevennet":
            try:
                import sevenn  # noqa: F401
            except ImportError:
                print(f"{name:20s} sevenn is not importable: skipped")
                continue
        result = run_isolated(__file__, [name, "--repeats", str(args.repeats)])
        if "error" in result:
            print(f"{name:20s} failed: {result['error']}: {result['stderr'].strip().splitlines()[-1:]}")
            continue
        ef = statistics.median(result["ef"])

        def spread(values: list[float]) -> str:
            return f"{statistics.median(values):.3f} [{min(values):.3f}-{max(values):.3f}]"

        ratio, pruned = (statistics.median(result[key]) / ef for key in ("step", "step_parameters"))
        print(f"{name:20s} {result['parameters']:>9,} {spread(result['ef']):>20} {spread(result['step']):>20} "
              f"{ratio:>10.2f}  {'meets ' if ratio <= GOAL else 'misses'} {spread(result['step_parameters']):>23} "
              f"{pruned:>5.2f}", flush=True)
    print("models: " + "; ".join(f"{name}: {MODELS[name][2]}" for name in args.models))


if __name__ == "__main__":
    main()
