"""``equicalc models``: list the named models."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Declare the ``models`` command."""
    parser = subparsers.add_parser("models", help="list the named models that ship with equicalc",
                                   description="List the named models that ship with equicalc.")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print each registered model's name and description."""
    from potentials import available_models

    for name, description in available_models().items():
        print(f"{name:20s} {description}")
    return 0
