"""Energy+forces timing of SAKE (every ablation switch) beside EGNN, measured in the same run.

Two workloads: a 1,000-atom periodic fcc Cu crystal (rattled) and a batch of 32 random 20-atom
H/C/O molecules. Each (model, workload) runs in a fresh subprocess so its peak memory can be read
(CPU: peak resident set size of the process; CUDA: torch's peak allocation). Prints the median time
of several energy+forces evaluations and its ratio to EGNN's.

    python bench/models.py [--device cuda] [--dtype float32] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from isolated import run_isolated, time_and_memory  # noqa: E402

MODELS = {
    "egnn": ("egnn", {}),
    "sake": ("sake", {}),
    "sake-linear": ("sake", {"coefficients": "linear"}),
    "sake-polynomial": ("sake", {"coefficients": "polynomial"}),
    "sake-mlp": ("sake", {"coefficients": "mlp"}),
    "sake-no-velocity": ("sake", {"update": "no_velocity"}),
    "sake-frozen": ("sake", {"update": "frozen"}),
    "sake-no-spatial": ("sake", {"spatial_attention": False}),
    "sake-no-semantic": ("sake", {"semantic_attention": False}),
}
WORKLOADS = ("bulk1000", "molecules32x20")
CUTOFF = 5.0


def workload(name: str):
    import numpy as np
    from ase import Atoms
    from ase.build import bulk

    rng = np.random.default_rng(0)
    if name == "bulk1000":
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((5, 5, 10))
        atoms.rattle(0.05, seed=1)
        return [atoms]
    molecules = []
    while len(molecules) < 32:  # random clusters with no pair closer than 0.9 Å
        positions = rng.uniform(0, 6.0, (20, 3))
        d = np.linalg.norm(positions[:, None] - positions[None], axis=-1) + 10 * np.eye(20)
        if d.min() > 0.9:
            molecules.append(Atoms(numbers=rng.choice([1, 6, 8], 20), positions=positions))
    return molecules


def measure(model_name: str, workload_name: str, device: str, dtype: str, repeats: int) -> dict:
    import torch

    from equicalc import SystemBatch, predict
    from potentials import build

    architecture, switches = MODELS[model_name]
    torch.manual_seed(0)
    config = {"cutoff": CUTOFF, "elements": [1, 6, 8, 29], "hidden": 64, "layers": 4, **switches}
    model = build(architecture, config).to(device=device, dtype=getattr(torch, dtype))
    systems = SystemBatch.from_atoms(workload(workload_name), dtype=getattr(torch, dtype), device=device)

    def run() -> None:
        out = predict(model, systems, forces=True, stress=False)
        out.forces.sum().item()

    return {**time_and_memory(run, repeats, device), "atoms": int(systems.positions.shape[0])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "WORKLOAD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(*args.one, args.device, args.dtype, args.repeats)))
        return

    results = {}
    for model_name in MODELS:
        for workload_name in WORKLOADS:
            results[model_name, workload_name] = run_isolated(
                __file__, [model_name, workload_name, "--device", args.device, "--dtype", args.dtype,
                           "--repeats", str(args.repeats)]
            )
    memory = "peak GPU MB" if args.device.startswith("cuda") else "peak RSS MB"
    print(f"energy+forces, device {args.device}, {args.dtype}, cutoff {CUTOFF} Å, hidden 64, 4 layers; "
          f"median of {args.repeats}")
    print(f"{'model':18s} {'bulk 1000 ms':>12} {'/egnn':>6} {memory:>12} {'32x20 mol ms':>13} {'/egnn':>6} {memory:>12}")
    for model_name in MODELS:
        row = [f"{model_name:18s}"]
        for workload_name in WORKLOADS:
            r, ref = results[model_name, workload_name], results["egnn", workload_name]
            row.append(f"{1e3 * r['seconds']:>12.1f} {r['seconds'] / ref['seconds']:>6.2f} {r['peak_mb']:>12.0f}")
        print(" ".join(row))


if __name__ == "__main__":
    main()
