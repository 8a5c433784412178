"""The ``equicalc`` command: ``models``, ``info``, ``relax``, ``md``, ``phonons``, ``screen``, ``evaluate``,
``train``, ``metrics`` and ``data``.

Each command is a module of this package with ``add_parser(subparsers)``, which declares its
arguments and sets ``run`` (the function that carries it out, returning the exit code). Bad
input, whether a malformed argument or a file or model that cannot be used, ends the command
with one line ``equicalc: error: ...`` on stderr and exit code 2 (``--traceback`` shows the
full traceback of the latter instead).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import NoReturn

from . import data, evaluate, info, md, metrics, models, phonons, relax, screen, train

COMMANDS = (models, info, relax, md, phonons, screen, evaluate, train, metrics, data)


class CommandLineParser(argparse.ArgumentParser):
    """An argument parser whose every error is one line ``equicalc: error: ...`` and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"equicalc: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> CommandLineParser:
    """The parser of the ``equicalc`` command and all its subcommands."""
    parser = CommandLineParser(prog="equicalc", description="Energies, forces and dynamics from equivariant "
                               "interatomic potentials through ASE.")
    parser.add_argument("-T", "--traceback", action="store_true",
                        help="show the full traceback instead of one line when a file or model cannot be used")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        if args.traceback:
            raise
        parser.exit(130, "equicalc: interrupted (results written so far are kept; rerun the same command to "
                         "resume where it applies)\n")
    except (ValueError, OSError) as err:
        if args.traceback:
            raise
        message = f"{err.strerror}: {err.filename}" if isinstance(err, OSError) and err.filename else str(err)
        parser.exit(2, f"equicalc: error: {message}\n")
