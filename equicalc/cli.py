"""The ``equicalc`` command: ``equicalc models`` and ``equicalc md``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="equicalc", description=__doc__)
    parser.add_argument("-T", "--traceback", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("models", help="list the named models that ship with equicalc")

    md = sub.add_parser("md", help="run molecular dynamics and report energy conservation")
    md.add_argument("--model", default="lj-argon", help="model name or checkpoint path (default: lj-argon)")
    md.add_argument("--structure", help="structure file readable by ase.io.read (default: 108-atom fcc argon)")
    md.add_argument("--steps", type=int, default=200)
    md.add_argument("--timestep-fs", type=float, default=5.0)
    md.add_argument("--temperature-K", type=float, default=40.0)
    md.add_argument("--ensemble", choices=("nve", "nvt"), default="nve")
    md.add_argument("--device", default="auto")
    md.add_argument("--dtype", default="float64", choices=("float32", "float64"))
    md.add_argument("--trajectory", help="write frames to this .traj file")
    md.add_argument("--logfile", help="write an MD log here ('-' for the screen)")
    md.add_argument("--interval", type=int, default=10, help="steps between trajectory frames and log lines")

    args = parser.parse_args(argv)
    try:
        return {"models": _models, "md": _md}[args.command](args)
    except (ValueError, FileNotFoundError) as err:
        if args.traceback:
            raise
        parser.exit(2, f"equicalc: error: {err}\n")
    return 1


def _models(args: argparse.Namespace) -> int:
    from potentials import available_models

    for name, description in available_models().items():
        print(f"{name:20s} {description}")
    return 0


def _md(args: argparse.Namespace) -> int:
    from ase.build import bulk
    from ase.io import read

    from workflows import run_md

    from .calculator import EquiCalculator

    atoms = read(args.structure) if args.structure else bulk("Ar", "fcc", a=5.26, cubic=True).repeat(3)
    atoms.calc = EquiCalculator(args.model, device=args.device, dtype=args.dtype)
    summary = run_md(
        atoms, steps=args.steps, timestep_fs=args.timestep_fs, temperature_K=args.temperature_K,
        ensemble=args.ensemble, trajectory=args.trajectory, logfile=args.logfile, interval=args.interval,
    )
    calc = atoms.calc
    print(f"model {calc.parameters['model']} on {calc.parameters['device']} ({calc.parameters['dtype']})")
    print(f"{summary.ensemble.upper()} MD: {summary.steps} steps of {args.timestep_fs} fs, {summary.n_atoms} atoms "
          f"{atoms.get_chemical_formula()}")
    print(f"temperature {summary.temperature_K[0]:.1f} K -> {summary.temperature_K[1]:.1f} K")
    print(f"total energy {summary.total_energy_eV[0]:.6f} eV -> {summary.total_energy_eV[1]:.6f} eV, "
          f"max drift {summary.max_drift_eV_per_atom:.2e} eV/atom")
    print(f"{1e3 * summary.seconds_per_step:.2f} ms per step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
