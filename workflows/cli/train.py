"""``equicalc train``: train a potential from a YAML config (resuming a run its output directory holds)."""

from __future__ import annotations

import argparse

from .arguments import existing_file


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Declare the ``train`` command and its arguments."""
    parser = subparsers.add_parser(
        "train", help="train a potential on labelled frames (YAML config)",
        description="Train a model of potentials/ on energies, forces (and stress) of labelled frames read from "
                    "an ASE database or any ASE-readable file. Writes best.pt and last.pt (EMA weights), "
                    "metrics.csv and resume.pt to training.output; a run whose output holds resume.pt continues "
                    "where it stopped. Under torchrun (torchrun --nproc_per_node N -m workflows.cli train ...) "
                    "each process takes a share of every batch.",
    )
    parser.add_argument("config", nargs="?", type=existing_file, metavar="CONFIG.yaml",
                        help="the training config; 'equicalc train --example' prints one with every key documented")
    parser.add_argument("--example", action="store_true", help="print a complete, documented config and exit")
    parser.add_argument("--restart", action="store_true",
                        help="start afresh even if training.output holds a run to resume (its files are overwritten)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Train, then print where the checkpoints are."""
    from ..training import example_yaml, load_config, restart, train

    if args.example:
        print(example_yaml(), end="")
        return 0
    if args.config is None:
        raise ValueError("train needs a CONFIG.yaml ('equicalc train --example' prints one)")
    cfg = load_config(args.config)
    if args.restart:
        restart(cfg)
    result = train(cfg)
    print(f"trained {result.epochs} epochs in {result.seconds:.0f} s; best {result.best}, last {result.last}")
    return 0
