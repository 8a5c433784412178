"""``equicalc md``: run molecular dynamics through the calculator and report energy conservation."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .arguments import device, existing_file, non_negative_float, non_negative_int, positive_float, positive_int

if TYPE_CHECKING:
    from ase import Atoms


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Declare the ``md`` command and its arguments."""
    parser = subparsers.add_parser(
        "md", help="run molecular dynamics and report energy conservation",
        description="Run NVE (velocity Verlet) or NVT (Langevin) molecular dynamics through the equicalc "
                    "calculator, starting from Maxwell-Boltzmann velocities, and report the temperature, the "
                    "total energy and its largest drift.",
    )
    parser.add_argument("--model", default="lj-argon",
                        help="registered model name (see 'equicalc models') or checkpoint path (default: %(default)s)")
    parser.add_argument("--structure", type=existing_file, metavar="FILE",
                        help="structure file readable by ase.io.read (default: 108-atom fcc argon, a = 5.26 Å)")
    parser.add_argument("--steps", type=non_negative_int("steps"), default=200, metavar="N",
                        help="integration steps, >= 0 (default: %(default)s)")
    parser.add_argument("--timestep-fs", type=positive_float("fs"), default=5.0, metavar="FS",
                        help="integration time step in fs, > 0 (default: %(default)s)")
    parser.add_argument("--temperature-K", type=non_negative_float("K"), default=40.0, metavar="K",
                        help="initial temperature in K for the velocities, and the thermostat's with nvt, "
                             ">= 0 (default: %(default)s)")
    parser.add_argument("--ensemble", choices=("nve", "nvt"), default="nve",
                        help="nve: velocity Verlet; nvt: Langevin, friction 0.01 /fs (default: %(default)s)")
    parser.add_argument("--device", type=device, default="auto",
                        help="'cpu', 'cuda', 'cuda:N' or 'auto' (CUDA when available) (default: %(default)s)")
    parser.add_argument("--dtype", default="float64", choices=("float32", "float64"),
                        help="precision of the network; geometry is float64 either way (default: %(default)s)")
    parser.add_argument("--trajectory", metavar="FILE", help="write frames to this ASE .traj file")
    parser.add_argument("--logfile", metavar="FILE",
                        help="write an MD log (time in ps, energies in eV, temperature in K) here; '-' for the screen")
    parser.add_argument("--interval", type=positive_int("steps"), default=10, metavar="N",
                        help="steps between trajectory frames and log lines, >= 1 (default: %(default)s)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the job and print its summary."""
    from ase.build import bulk

    from equicalc import EquiCalculator

    from ..md import run_md

    atoms = read_structure(args.structure) if args.structure else bulk("Ar", "fcc", a=5.26, cubic=True).repeat(3)
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


def read_structure(path: str) -> Atoms:
    """The last frame of the structure file ``path``; a ``ValueError`` naming the file if it cannot be read."""
    from ase.io import read

    try:
        return read(path)
    except Exception as err:  # ase.io's many readers fail with many exception types
        raise ValueError(f"cannot read structure file {path!r} ({type(err).__name__}: {err})") from err
