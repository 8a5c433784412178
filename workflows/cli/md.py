"""``equicalc md``: molecular dynamics through the calculator (NVE, NVT, NPT) with a log, a trajectory,
a summary and a plot."""

from __future__ import annotations

import argparse
import sys
import textwrap

from .arguments import (add_model_arguments, existing_file, finite_float, non_negative_float, non_negative_int,
                        positive_float, positive_int)
from .structures import read_structure

#: ``--ensemble`` choices and what each runs (``nvt``: the earlier name of ``langevin``)
ENSEMBLE_HELP = {
    "nve": "velocity Verlet",
    "langevin": "NVT, Langevin thermostat (--friction)",
    "bussi": "NVT, Bussi stochastic velocity rescaling (--tdamp-fs)",
    "nhc": "NVT, Nosé-Hoover chain (--tdamp-fs)",
    "npt-mtk": "NPT, ASE's Martyna-Tobias-Klein integrator (--pressure-GPa, --tdamp-fs, --pdamp-fs)",
    "npt-berendsen": "NPT, Berendsen (same flags); equilibrates quickly, but its fluctuations are not NPT's",
    "nvt": "same as langevin",
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Declare the ``md`` command and its arguments."""
    parser = subparsers.add_parser(
        "md", help="run molecular dynamics (NVE, NVT, NPT) with a log, a trajectory and a plot",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.fill(
                    "Run molecular dynamics through the equicalc calculator with ASE's integrators, starting from "
                    "Maxwell-Boltzmann velocities at --temperature-K (seeded, zero total momentum), and print a "
                    "summary: temperature and, for periodic systems, pressure averaged over the second half "
                    "(with standard deviations), volume for NPT, and for NVE the energy drift (slope of a line "
                    "through E_tot/N, eV/atom/ps) and the largest deviation of E_tot/N.", 100)
                    + "\n\nensembles:\n"
                    + "\n".join(f"  {name:14s} {text}" for name, text in ENSEMBLE_HELP.items()),
    )
    parser.add_argument("structure", nargs="?", type=existing_file, metavar="STRUCTURE",
                        help="structure file ase.io.read reads (extxyz, traj, POSCAR, cif, ...; the last frame); "
                             "default: 108-atom fcc argon, a = 5.26 Å, for the lj-argon model")
    parser.add_argument("--structure", dest="structure_option", type=existing_file, metavar="FILE",
                        help="the same as STRUCTURE: a structure file ase.io.read reads")
    add_model_arguments(parser, default_model="lj-argon")
    parser.add_argument("--ensemble", choices=tuple(ENSEMBLE_HELP), default="nve",
                        help="the ensemble and its integrator, listed above (default: %(default)s)")
    parser.add_argument("--steps", type=non_negative_int("steps"), default=200, metavar="N",
                        help="integration steps, >= 0 (default: %(default)s)")
    parser.add_argument("--timestep-fs", type=positive_float("fs"), default=5.0, metavar="FS",
                        help="time step in fs, > 0; 1-2 fs for metals and light atoms, 5 fs is fine for argon "
                             "(default: %(default)s)")
    parser.add_argument("--temperature-K", type=non_negative_float("K"), default=40.0, metavar="K",
                        help="temperature of the initial velocities and the thermostat's target, in K, >= 0 "
                             "(> 0 for bussi, nhc and NPT) (default: %(default)s)")
    parser.add_argument("--pressure-GPa", type=finite_float("GPa"), metavar="GPA",
                        help="target pressure in GPa (1 GPa = 10 kbar = 10^4 bar), required by npt-mtk and "
                             "npt-berendsen, refused by the others")
    parser.add_argument("--friction", type=non_negative_float("1/fs"), default=0.01, metavar="PER_FS",
                        help="Langevin friction in 1/fs, >= 0 (0.01 /fs = 10 /ps) (default: %(default)s)")
    parser.add_argument("--tdamp-fs", type=positive_float("fs"), default=100.0, metavar="FS",
                        help="thermostat time constant in fs for bussi, nhc, npt-mtk and npt-berendsen, > 0; "
                             "about 100 time steps (default: %(default)s)")
    parser.add_argument("--pdamp-fs", type=positive_float("fs"), default=1000.0, metavar="FS",
                        help="barostat time constant in fs for npt-mtk and npt-berendsen, > 0; about 1000 time "
                             "steps (default: %(default)s)")
    parser.add_argument("--compressibility-per-GPa", type=positive_float("1/GPa"), metavar="PER_GPA",
                        help="npt-berendsen: the compressibility in 1/GPa, > 0 (default: 1/B, the bulk modulus B "
                             "estimated from two strained copies of the start structure)")
    parser.add_argument("--anisotropic", action="store_true",
                        help="NPT: let the cell shape change too (npt-mtk: the full cell, ASE's MTKNPT; "
                             "npt-berendsen: the three cell lengths, angles kept); default: the volume only")
    parser.add_argument("--seed", type=int, default=0, metavar="INT",
                        help="seed of the initial velocities and of the Langevin and Bussi noise (default: %(default)s)")
    parser.add_argument("--interval", type=positive_int("steps"), default=10, metavar="N",
                        help="steps between samples (log lines, trajectory frames, points of the summary and the "
                             "plot), >= 1 (default: %(default)s)")
    parser.add_argument("--trajectory", metavar="FILE",
                        help="write a frame every --interval steps: .traj (ASE) or .xyz/.extxyz (extended XYZ), "
                             "with energy, forces and stress")
    parser.add_argument("--log", "--logfile", dest="log", metavar="FILE",
                        help="write the log (time ps, Etot Epot Ekin eV, T K, P GPa where periodic, V Å³ for NPT) "
                             "every --interval steps; '-' for the screen")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="save energies, temperature, pressure and volume over the run as a PNG")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the job and print its summary."""
    from ase.build import bulk

    from equicalc import EquiCalculator

    if args.structure and args.structure_option:
        raise ValueError("give the structure once: as STRUCTURE or as --structure, not both")
    path = args.structure or args.structure_option
    atoms = read_structure(path) if path else bulk("Ar", "fcc", a=5.26, cubic=True).repeat(3)
    atoms.calc = EquiCalculator(args.model, device=args.device, dtype=args.dtype)
    calc = atoms.calc
    print(f"model {calc.parameters['model']} on {calc.parameters['device']} ({calc.parameters['dtype']}), "
          f"{atoms.get_chemical_formula()}", flush=True)
    try:
        summary = _run(atoms, args)
    except ValueError as err:  # name the flags, not run_md's parameters
        message = str(err)
        for parameter, flag in FLAGS.items():
            message = message.replace(parameter, flag)
        raise ValueError(message) from None
    print(summary.report())
    return 0


#: run_md's parameters that errors may name, and the flags that set them
FLAGS = {"temperature_K": "--temperature-K", "pressure_GPa": "--pressure-GPa", "timestep_fs": "--timestep-fs",
         "friction_per_fs": "--friction", "tdamp_fs": "--tdamp-fs", "pdamp_fs": "--pdamp-fs",
         "compressibility_per_GPa": "--compressibility-per-GPa"}


def _run(atoms, args: argparse.Namespace):
    """``run_md`` with the command line's settings."""
    from ..md import run_md

    return run_md(
        atoms, steps=args.steps, timestep_fs=args.timestep_fs, temperature_K=args.temperature_K,
        ensemble=args.ensemble, pressure_GPa=args.pressure_GPa, friction_per_fs=args.friction,
        tdamp_fs=args.tdamp_fs, pdamp_fs=args.pdamp_fs, compressibility_per_GPa=args.compressibility_per_GPa,
        anisotropic=args.anisotropic, seed=args.seed, trajectory=args.trajectory, logfile=args.log,
        plot=args.plot, interval=args.interval, progress=sys.stderr.isatty() and args.log != "-",
    )
