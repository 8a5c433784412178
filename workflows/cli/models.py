"""``equicalc models``: list the named models, or show one's model card."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Declare the ``models`` command."""
    parser = subparsers.add_parser(
        "models", help="list the named models that ship with equicalc, or show one's model card",
        description="List the named models that ship with equicalc (with the model card of each trained one: "
                    "data, elements, cutoff, size, accuracy, training cost and what it is not for), or only NAME's.")
    parser.add_argument("name", nargs="?", help="show only this model")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print each registered model's name, description and card."""
    from potentials import available_models, model_card

    names = [args.name] if args.name else list(available_models())
    for name in names:
        card = model_card(name)  # ConfigError (a ValueError) for an unknown name
        print(f"{name:20s} {available_models()[name]}")
        for key, value in (card or {}).items():
            if key not in ("name", "summary", "file"):
                print(f"    {key}: {format_value(value)}")
    return 0


def format_value(value: object) -> str:
    """A card entry on one line: mappings as 'key value, ...'."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {format_value(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(format_value(v) for v in value)
    return str(value)
