"""``equicalc info``: the shipped potentials at a glance, or what one model or checkpoint file holds."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .models import format_value

if TYPE_CHECKING:
    from potentials import Potential


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Declare the ``info`` command."""
    parser = subparsers.add_parser(
        "info", help="list the shipped potentials, or show what a model or checkpoint holds",
        description="Without an argument, list the potentials that ship with equicalc: name, architecture, "
                    "parameters, cutoff, elements and the accuracy line of the model card. With a shipped name or "
                    "the path of a checkpoint (equicalc's format or an official fairchem 1.x EquiformerV2 file), "
                    "show what it holds: architecture, precision, conservative or direct forces, elements, cutoff, "
                    "neighbour cap, parameter count, reference energies, every configuration key and the "
                    "metadata (training summary); for a shipped model also its model card ('equicalc models').")
    parser.add_argument("model", nargs="?", metavar="CHECKPOINT_OR_NAME",
                        help="a shipped potential's name or a checkpoint file (default: list the shipped potentials)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the list of shipped potentials, or one model's contents."""
    if args.model is None:
        list_shipped()
    else:
        describe(args.model)
    return 0


def list_shipped() -> None:
    """One line per registered potential (built from its weights, so the figures are the file's) and the
    accuracy of its model card."""
    from potentials import available_models, load_model, model_card

    print(f"{'name':<14} {'architecture':<15} {'parameters':>10} {'cutoff [Å]':>10}  elements")
    for name, description in available_models().items():
        model = load_model(name)
        print(f"{name:<14} {model.architecture:<15} {parameter_count(model):>10,} {model.cutoff:>10g}  "
              f"{element_list(model.elements)}")
        accuracy = (model_card(name) or {}).get("accuracy")
        print(f"    {'accuracy: ' + format_value(accuracy) if accuracy else 'about: ' + description}")
    print("'equicalc info NAME' shows what a model holds, 'equicalc models NAME' its model card")


def describe(spec: str) -> None:
    """Everything :func:`potentials.load_potential` finds in a shipped name or a checkpoint file ``spec``.

    Raises:
        ValueError: ``spec`` names neither a registered model nor a file; ``CheckpointError`` (a
            ``ValueError``) for a file that is not a usable checkpoint.
    """
    from ase.data import chemical_symbols

    from potentials import available_models, load_potential

    from . import models

    model = load_potential(spec)
    config = model.config.to_dict()
    shipped = spec in available_models()
    print(f"{'model':<19} {spec}" + (" (shipped)" if shipped else ""))
    if not shipped:
        print(f"{'format':<19} {model.metadata.get('format', 'equicalc checkpoint')}")
    print(f"{'architecture':<19} {model.architecture}")
    print(f"{'precision':<19} {str(model.dtype).removeprefix('torch.')}")
    print(f"{'forces':<19} " + ("direct (a force head: not -dE/dr, NVE MD does not conserve energy)"
                                if model.direct_forces else "conservative (-dE/dr by autograd)"))
    print(f"{'elements':<19} {element_list(model.elements)} ({len(model.elements)})")
    print(f"{'cutoff':<19} {model.cutoff:g} Å")
    cap = config.get("max_neighbors")
    strict = "exactly" if config.get("enforce_max_neighbors_strictly") else "at most, shells kept whole"
    print(f"{'neighbours':<19} " + (f"{cap} per atom ({strict})" if cap else "all within the cutoff"))
    print(f"{'parameters':<19} {parameter_count(model):,}")
    energies = config.get("atomic_energies")
    if energies and any(energies):
        pairs = ", ".join(f"{chemical_symbols[z]} {e:.4f}" for z, e in zip(model.elements, energies))
        print(f"{'reference energies':<19} {pairs} eV")
    print("config:")
    for key, value in config.items():
        if key not in ("elements", "atomic_energies"):
            print(f"    {key}: {format_value(value)}")
    print("metadata:")
    for key, value in model.metadata.items():
        if key == "training" and isinstance(value, dict):
            stored = value.get("config")
            summary = {k: v for k, v in value.items() if k != "config"}
            print(f"    training: {format_value(summary) or 'none'}")
            if isinstance(stored, dict):
                print(f"    training config: sections {', '.join(stored)} (the full recipe is stored)")
        elif key not in ("cutoff", "elements", "format"):  # shown above
            print(f"    {key}: {format_value(value)}")
    if shipped:
        print("model card:")
        models.run(argparse.Namespace(name=spec))


def parameter_count(model: Potential) -> int:
    """Trainable and frozen parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


def element_list(numbers: tuple[int, ...]) -> str:
    """Chemical symbols of the atomic numbers ``numbers``, runs of three or more consecutive ones as ``first-last``.

        >>> element_list((1, 6, 7, 8, 13))
        'H C-O Al'
    """
    from ase.data import chemical_symbols

    runs: list[list[int]] = []
    for z in sorted(numbers):
        if runs and z == runs[-1][-1] + 1:
            runs[-1].append(z)
        else:
            runs.append([z])
    return " ".join(
        f"{chemical_symbols[run[0]]}-{chemical_symbols[run[-1]]}" if len(run) >= 3
        else " ".join(chemical_symbols[z] for z in run)
        for run in runs
    )
