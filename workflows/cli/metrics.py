"""``equicalc metrics``: a model's errors on labelled frames (energy per atom, forces, stress)."""

from __future__ import annotations

import argparse
import json

from .arguments import device, existing_file, positive_int


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Declare the ``metrics`` command and its arguments."""
    parser = subparsers.add_parser(
        "metrics", help="a model's energy and force errors on labelled frames",
        description="Evaluate a model on labelled frames (an ASE database or any ASE-readable file) and print the "
                    "energy MAE [meV/atom], force MAE [meV/Å] over free atoms, mean force cosine and stress MAE "
                    "[meV/Å³] (where frames have stress), as the training validation computes them.",
    )
    parser.add_argument("--model", required=True, help="a shipped model name, a checkpoint path or a fairchem checkpoint")
    parser.add_argument("--data", required=True, type=existing_file, metavar="FILE",
                        help="labelled frames: an ASE database or any file ase.io.read reads")
    parser.add_argument("--select", default="", metavar="QUERY",
                        help="ase.db query for a database (e.g. 'split=test_id'), ase.io index for other files")
    parser.add_argument("--energy-key", default="energy", help="label of the total energy [eV] (default: %(default)s)")
    parser.add_argument("--forces-key", default="forces", help="label of the forces [eV/Å] (default: %(default)s)")
    parser.add_argument("--all-atoms", action="store_true", help="force errors over all atoms, fixed ones included")
    parser.add_argument("--batch-size", type=positive_int("frames"), default=8, help="frames per model call (default: %(default)s)")
    parser.add_argument("--device", type=device, default="auto", help="'cpu', 'cuda', 'cuda:N' or 'auto' (default: %(default)s)")
    parser.add_argument("--dtype", default="float64", choices=("float32", "float64"),
                        help="precision of the network (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the metrics."""
    from equicalc.models import resolve_device, resolve_dtype
    from potentials import load_potential

    from ..training import read_frames, score
    from ..training.frames import check_frames

    model = load_potential(args.model).to(resolve_dtype(args.dtype))
    frames = read_frames(args.data, args.select, energy_key=args.energy_key, forces_key=args.forces_key)
    check_frames(frames, model.elements, "evaluation", energy_key=args.energy_key, forces_key=args.forces_key)
    result = score(model, frames, batch_size=args.batch_size, free_atoms_only=not args.all_atoms,
                   device=resolve_device(args.device))
    result = {"model": args.model, "frames": len(frames), **{k: v for k, v in result.items() if k != "loss"}}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.model} on {len(frames)} frames of {args.data} {args.select}".rstrip())
    print(f"energy MAE {result['energy_mae']:.2f} meV/atom, force MAE {result['forces_mae']:.1f} meV/Å, "
          f"force cosine {result['forces_cos']:.3f}"
          + (f", stress MAE {result['stress_mae']:.2f} meV/Å³" if result["stress_mae"] == result["stress_mae"] else ""))
    return 0
