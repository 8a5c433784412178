"""The README's model table and learning curves of the shipped potentials.

    python -m tools.model_table --data data/emt-oc.db [--models eqv2-emt-oc sake-emt-oc runs/egnn-emt-oc/best.pt]
        [--plot potentials/weights/learning_curves.png] [--limit N]

For each model: energy MAE [meV/atom] and force MAE [meV/Å] (free atoms) on the in-distribution
(``split=test_id``) and out-of-distribution (``split=test_ood``) test frames of the database that
``equicalc data`` regenerates, the parameter count and the training time its checkpoint records.
With ``--plot``, the validation force and energy MAE per epoch of each model's training log
(``metrics.csv`` in the checkpoint's training summary, or ``weights/<name>.metrics.csv``).
"""

from __future__ import annotations

import argparse
import copy
import csv
from pathlib import Path

from potentials import Potential, load_potential
from workflows.training import read_frames, score
from workflows.training.trainer import subset

SHIPPED = ("eqv2-emt-oc", "sake-emt-oc")
WEIGHTS = Path(__file__).resolve().parents[1] / "potentials" / "weights"


def test_metrics(model: Potential, data: Path, limit: int | None = None) -> dict[str, dict[str, float]]:
    """``{"test_id": metrics, "test_ood": metrics}`` of ``model`` (in float64) on the database ``data``
    (on a random subset of ``limit`` frames of each split, seed 0, when given); ``model`` itself is not changed."""
    model = copy.deepcopy(model).double()
    return {split: score(model, subset(read_frames(data, f"split={split}"), limit, 0), batch_size=16)
            for split in ("test_id", "test_ood")}


def row(spec: str, data: Path, limit: int | None) -> str:
    """One markdown table row for the model ``spec``."""
    model = load_potential(spec)
    cells = [f"{m[key]:.1f}" for m in test_metrics(model, data, limit).values() for key in ("energy_mae", "forces_mae")]
    training = model.metadata.get("training", {})
    parameters = sum(p.numel() for p in model.parameters())
    hours = training.get("seconds", float("nan")) / 3600
    return (f"| `{spec}` | {model.architecture} | {parameters / 1e3:.0f} k | {' | '.join(cells)} | "
            f"{training.get('epochs', '?')} epochs, {training.get('steps', '?')} steps, {hours:.1f} h |")


def curves(specs: list[str], path: Path) -> None:
    """Plot validation force and energy MAE per epoch of each model's training log to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (forces, energy) = plt.subplots(1, 2, figsize=(10, 4))
    for spec in specs:
        log = WEIGHTS / f"{Path(spec).stem if spec.endswith('.pt') else spec}.metrics.csv"
        if not log.exists():
            continue
        rows = list(csv.DictReader(open(log)))
        seen = [int(r.get("frames") or 8 * int(r["step"])) / 1000 for r in rows]  # older logs: batches of 8
        forces.plot(seen, [float(r["val_forces_mae_meV_per_A"]) for r in rows], marker="o", label=spec)
        energy.plot(seen, [float(r["val_energy_mae_meV_per_atom"]) for r in rows], marker="o", label=spec)
    for ax, label in ((forces, "validation force MAE [meV/Å]"), (energy, "validation energy MAE [meV/atom]")):
        ax.set_xlabel("training frames seen [thousands]")
        ax.set_ylabel(label)
        ax.set_yscale("log")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/emt-oc.db"))
    parser.add_argument("--models", nargs="+", default=list(SHIPPED))
    parser.add_argument("--limit", type=int, default=None, help="a random subset of this many frames per split")
    parser.add_argument("--plot", type=Path, help="write the learning curves here")
    args = parser.parse_args()
    print("| model | architecture | parameters | energy MAE ID [meV/atom] | force MAE ID [meV/Å] | "
          "energy MAE OOD [meV/atom] | force MAE OOD [meV/Å] | training |")
    print("|---|---|---|---|---|---|---|---|")
    for spec in args.models:
        print(row(spec, args.data, args.limit), flush=True)
    if args.plot:
        curves(args.models, args.plot)


if __name__ == "__main__":
    main()
