"""Ship a trained model inside the package: weights, training log and model card in potentials/weights/.

    python -m tools.ship_model runs/eqv2-emt-oc eqv2-emt-oc --data data/emt-oc.db --summary "..."

Copies ``<run>/best.pt`` (re-saved under ``NAME``, at most 20 MB) and ``<run>/metrics.csv``, measures the
model on the database's ``test_id`` and ``test_ood`` splits, and writes the card ``NAME.json`` that
``potentials/named_models.py`` registers and ``equicalc models NAME`` prints.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from ase.data import chemical_symbols

from potentials import Potential, load_checkpoint, save_checkpoint
from tools.model_table import WEIGHTS, test_metrics

LIMIT_MB = 20


def card(name: str, summary: str, model: Potential, data: Path, limit: int | None,
         training_note: str | None = None) -> dict:
    """The model card of a trained ``model`` (its metadata holds the training summary)."""
    training = model.metadata["training"]
    recipe = training["config"]
    metrics = test_metrics(model, data, limit)
    return {
        "name": name,
        "file": f"{name}.pt",
        "summary": summary,
        "architecture": model.architecture,
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": str(model.dtype).removeprefix("torch."),
        "cutoff_A": model.cutoff,
        "max_neighbors": model.config.max_neighbors,
        "elements": " ".join(chemical_symbols[z] for z in model.elements),
        "data": f"`equicalc data {data.name}` (EMT labels, seed 0): {training['train_frames']} training frames "
                f"of split=train, validated on split=val",
        "accuracy": {split: f"energy MAE {m['energy_mae']:.1f} meV/atom, force MAE {m['forces_mae']:.0f} meV/Å, "
                            f"force cosine {m['forces_cos']:.2f}" for split, m in metrics.items()},
        "training": training_note or f"{training['epochs']} epochs, {training['steps']} steps of {recipe['training']['batch_size']} "
                    f"frames, {training['seconds'] / 3600:.1f} h on 2 shared CPU cores "
                    f"(recipe: workflows/training/recipes/{name}.yaml)",
        "not_for": "science on real materials: EMT is a toy reference (no real adsorption chemistry); for the "
                   "screening workflow, tests, demos and as a starting point for fine-tuning",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="training output directory (best.pt, metrics.csv)")
    parser.add_argument("name", help="the shipped name, e.g. eqv2-emt-oc")
    parser.add_argument("--data", type=Path, default=Path("data/emt-oc.db"))
    parser.add_argument("--summary", required=True, help="one line for 'equicalc models'")
    parser.add_argument("--training-note", help="how it was trained, when not one run of its recipe on 2 CPU cores")
    parser.add_argument("--limit", type=int, default=None, help="a random subset of this many test frames per split")
    args = parser.parse_args()
    model = load_checkpoint(args.run / "best.pt")
    WEIGHTS.mkdir(exist_ok=True)
    target = save_checkpoint(model, WEIGHTS / f"{args.name}.pt", name=args.name, training=model.metadata["training"])
    size = target.stat().st_size / 2**20
    if size > LIMIT_MB:
        target.unlink()
        raise SystemExit(f"{target} would be {size:.1f} MB, over the {LIMIT_MB} MB limit")
    shutil.copy(args.run / "metrics.csv", WEIGHTS / f"{args.name}.metrics.csv")
    entry = card(args.name, args.summary, model, args.data, args.limit, args.training_note)
    (WEIGHTS / f"{args.name}.json").write_text(json.dumps(entry, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps(entry, indent=1, ensure_ascii=False))
    print(f"wrote {target} ({size:.2f} MB)")


if __name__ == "__main__":
    main()
