"""``equicalc relax``: relax the structure(s) of a file and write them, a summary and the relaxation curves."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from .arguments import add_model_arguments, existing_file, positive_float, positive_int
from .structures import read_frames

if TYPE_CHECKING:
    from ase import Atoms

    from equicalc import EquiCalculator

    from ..relax import RelaxResult

#: formats of the relaxed structures, by file suffix
OUTPUT_SUFFIXES = (".extxyz", ".xyz", ".traj")
#: optimizers of the batched engine (several frames)
BATCHED_OPTIMIZERS = ("FIRE", "LBFGS")


def fix_choice(text: str) -> str | list[int]:
    """``--fix``: ``'tags'``, ``'none'`` or comma-separated atom indices (``'0,1,2'``)."""
    if text in ("tags", "none"):
        return text
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be 'tags', 'none' or comma-separated atom indices such as '0,1,5', got {text!r}"
        ) from None


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Declare the ``relax`` command and its arguments."""
    parser = subparsers.add_parser(
        "relax", help="relax structures (ASE's FIRE, BFGS or LBFGS; many frames in one batch)",
        description="Relax every structure of STRUCTURE_FILE with the model until the largest force on a free atom "
                    "is below --fmax. One structure runs through ASE's optimizer and the equicalc calculator; a "
                    "file of several frames runs through the batched engine (all structures in one model call per "
                    "step). Writes the relaxed structures with their energies and forces, prints a summary "
                    "(converged, steps, fmax, final energy, energy change) and plots the relaxation curves.",
    )
    parser.add_argument("structure", type=existing_file, metavar="STRUCTURE_FILE",
                        help="any file ase.io.read reads (extxyz, traj, POSCAR, cif, ...); every frame is relaxed")
    add_model_arguments(parser)
    parser.add_argument("--optimizer", choices=("FIRE", "BFGS", "LBFGS"), default="FIRE",
                        help="ASE's optimizer; several frames take FIRE or LBFGS in the batched engine, BFGS "
                             "relaxes them one after another (default: %(default)s)")
    parser.add_argument("--fmax", type=positive_float("eV/Å"), default=0.05, metavar="EV_PER_A",
                        help="converged when the largest force on a free atom is below this, in eV/Å, > 0 "
                             "(with --relax-cell: the cell filter's generalized forces too) (default: %(default)s)")
    parser.add_argument("--steps", type=positive_int("steps"), default=500, metavar="N",
                        help="the most optimizer steps per structure, >= 1 (default: %(default)s)")
    parser.add_argument("--relax-cell", action="store_true",
                        help="also relax the cell of periodic structures to zero stress (ASE's FrechetCellFilter; "
                             "only periodic axes change; several frames are then relaxed one after another)")
    parser.add_argument("--fix", type=fix_choice, default="tags", metavar="tags|none|I,J,...",
                        help="atoms held fixed: 'tags' fixes OC20's tag-0 (subsurface) atoms when the structure has "
                             "OC20 tags (0 subsurface, 1 surface, 2 adsorbate; untagged structures: none), 'none', "
                             "or atom indices counted from 0 such as '0,1,5'; constraints in the file are kept "
                             "(default: %(default)s)")
    parser.add_argument("--output", metavar="FILE",
                        help="write the relaxed structures, with energy [eV] and forces [eV/Å], to this .extxyz or "
                             ".traj file (default: STRUCTURE_relaxed.extxyz next to the input)")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="save the relaxation curves (energy change [eV] and fmax [eV/Å] against step) to this "
                             "PNG (default: STRUCTURE_relax.png next to the input)")
    parser.add_argument("--trajectory", metavar="FILE",
                        help="write every step of a one-frame relaxation, with energy and forces, to this .traj or "
                             ".extxyz file")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Relax, write the structures and the plot, print the summary."""
    from ase.io import write

    from ..relax.plots import plot_relaxation

    frames = read_frames(args.structure)
    output, plot = output_paths(args)
    if args.trajectory is not None and len(frames) > 1:
        raise ValueError(f"--trajectory records one relaxation, but {args.structure} holds {len(frames)} frames")
    if len(frames) == 1:
        results = [relax_one(frames[0], args)]
    elif args.optimizer in BATCHED_OPTIMIZERS and not args.relax_cell:
        results = relax_batched(frames, args)
    else:
        print(f"relaxing {len(frames)} structures one after another (the batched engine has no "
              f"{'cell relaxation' if args.relax_cell else args.optimizer})")
        results = relax_in_turn(frames, args)
    results.sort(key=lambda r: r.index)
    relaxed = []
    for result in results:
        result.atoms.info.update(relax_converged=result.converged, relax_steps=result.steps, relax_fmax=result.fmax)
        relaxed.append(result.atoms)
    write(output, relaxed, format="traj" if output.suffix == ".traj" else "extxyz")
    plot_relaxation(results, plot, fmax=args.fmax)
    print_summary(results, args.fmax)
    print(f"relaxed structure{'s' if len(results) > 1 else ''}: {output}")
    print(f"relaxation curves: {plot}")
    if args.trajectory is not None:
        print(f"trajectory: {args.trajectory}")
    return 0


def output_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """The structure file and the PNG to write (defaults next to the input); ``ValueError`` for a bad
    suffix or a folder that does not exist."""
    source = Path(args.structure)
    output = Path(args.output) if args.output else source.with_name(f"{source.stem}_relaxed.extxyz")
    plot = Path(args.plot) if args.plot else source.with_name(f"{source.stem}_relax.png")
    if output.resolve() == source.resolve():
        raise ValueError(f"--output {str(output)!r} is the input file: give another name, the input is kept")
    if output.suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"--output must end in {', '.join(OUTPUT_SUFFIXES)}, got {str(output)!r}")
    if plot.suffix != ".png":
        raise ValueError(f"--plot must end in .png, got {str(plot)!r}")
    for flag, path in (("--output", output), ("--plot", plot)):
        if not path.absolute().parent.is_dir():
            raise ValueError(f"{flag}: the folder of {str(path)!r} does not exist")
    return output, plot


def relax_one(atoms: Atoms, args: argparse.Namespace) -> RelaxResult:
    """One structure through :func:`workflows.relax.single.relax` with the equicalc calculator and a progress bar."""
    from tqdm import tqdm

    from equicalc import EquiCalculator

    from ..relax.single import relax

    calc = EquiCalculator(args.model, device=args.device, dtype=args.dtype)
    print_model(calc)
    # delay: no bar is drawn before bad input is refused, so the error stays one line
    with tqdm(total=args.steps, unit="step", desc="relax", leave=False, delay=1.0) as bar:

        def show(step: int, energy: float, fmax: float) -> None:
            bar.set_postfix(fmax=f"{fmax:.3g} eV/Å", refresh=False)
            bar.update(step - bar.n)

        return relax(atoms, calc, optimizer=args.optimizer, fmax=args.fmax, steps=args.steps,
                     relax_cell=args.relax_cell, fix=args.fix, trajectory=args.trajectory, observer=show)


def relax_in_turn(frames: list[Atoms], args: argparse.Namespace) -> list[RelaxResult]:
    """Each structure through :func:`workflows.relax.single.relax`, one after another, with one calculator."""
    from dataclasses import replace

    from tqdm import tqdm

    from equicalc import EquiCalculator

    from ..relax.single import relax

    calc = EquiCalculator(args.model, device=args.device, dtype=args.dtype)
    print_model(calc)
    results = []
    for index, atoms in enumerate(tqdm(frames, unit="structure", desc="relax", leave=False, delay=1.0)):
        try:
            result = relax(atoms, calc, optimizer=args.optimizer, fmax=args.fmax, steps=args.steps,
                           relax_cell=args.relax_cell, fix=args.fix)
        except ValueError as err:
            raise ValueError(f"structure {index}: {err}") from err
        results.append(replace(result, index=index))
    return results


def relax_batched(frames: list[Atoms], args: argparse.Namespace) -> list[RelaxResult]:
    """All structures through the batched engine, with its progress bar over finished structures."""
    from equicalc import EquiCalculator

    from ..relax.engine import relax_batch
    from ..relax.single import apply_fix

    frames = [atoms.copy() for atoms in frames]
    for index, atoms in enumerate(frames):
        try:
            apply_fix(atoms, args.fix)
        except ValueError as err:
            raise ValueError(f"structure {index}: {err}") from err
    calc = EquiCalculator(args.model, device=args.device, dtype=args.dtype)
    print_model(calc)
    return list(relax_batch(frames, calc.model, optimizer=args.optimizer, fmax=args.fmax, max_steps=args.steps,
                            device=calc.device, dtype=calc.dtype, progress=True))


def print_model(calc: EquiCalculator) -> None:
    """The line naming the model, its device, precision and where its forces come from."""
    parameters = calc.parameters
    print(f"model {parameters['model']} on {parameters['device']} ({parameters['dtype']}, "
          f"{parameters['forces']} forces)")


def print_summary(results: list[RelaxResult], fmax: float) -> None:
    """One line per structure: converged, steps, final fmax [eV/Å], final energy and its change [eV]."""
    print(f"{'#':>4}  {'formula':<14} {'converged':<9} {'steps':>6} {'fmax [eV/Å]':>12} {'E final [eV]':>14} "
          f"{'ΔE [eV]':>11}")
    for r in results:
        note = f"  {r.error}" if r.error else ""
        print(f"{r.index:>4}  {r.atoms.get_chemical_formula():<14} {'yes' if r.converged else 'no':<9} {r.steps:>6} "
              f"{r.fmax:>12.4f} {r.energies[-1]:>14.6f} {r.energy_change:>11.6f}{note}")
    done = sum(r.converged for r in results)
    print(f"{done} of {len(results)} converged to fmax < {fmax:g} eV/Å")
