"""``equicalc phonons``: harmonic phonons of a crystal with phonopy, forces from a model or EMT."""

from __future__ import annotations

import argparse

import numpy as np

from .arguments import add_model_arguments, existing_file, non_negative_float, positive_float, positive_int


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Declare the ``phonons`` command and its arguments."""
    parser = subparsers.add_parser(
        "phonons", help="phonon bands, DOS and thermal properties of a crystal (phonopy)",
        description="Harmonic phonons of a crystal by finite displacements (phonopy): all displaced supercells "
                    "go through the model in batched calls; '--model emt' uses ASE's EMT instead, one supercell "
                    "at a time. Writes the band structure and DOS plot, the thermal properties plot, band.yaml, "
                    "total_dos.dat, thermal_properties.yaml, phonopy_params.yaml (phonopy.load reads it) and "
                    "summary.json, and prints the frequencies at Γ, imaginary modes, the highest frequency and "
                    "the thermal properties at 300 K. Relax the structure first (equicalc relax): residual "
                    "forces enter the force constants.",
    )
    parser.add_argument("structure", type=existing_file, metavar="STRUCTURE",
                        help="the unit cell, any file ase.io.read reads (the last frame), periodic along a, b and c")
    add_model_arguments(parser)
    parser.add_argument("--supercell", type=positive_int("cells"), nargs=3, default=(3, 3, 3), metavar="N",
                        help="repeats of the unit cell along a, b and c for the displaced supercells, integers "
                             ">= 1 (default: 3 3 3)")
    parser.add_argument("--displacement-A", type=positive_float("Å"), default=0.01, metavar="Å",
                        help="length of each atomic displacement in Å, > 0 and at most 0.2 (default: %(default)s)")
    parser.add_argument("--mesh", type=positive_int("q-points"), nargs=3, default=(20, 20, 20), metavar="N",
                        help="Γ-centred q-mesh of the DOS and thermal properties, q-points along each reciprocal "
                             "axis of the primitive cell, integers >= 1 (default: 20 20 20)")
    parser.add_argument("--path", default="auto",
                        help="band path: 'auto' (the standard path of the lattice, Setyawan-Curtarolo) or special "
                             "points by ASE's labels, runs separated by commas, e.g. GXWKGLUWLK,UX for fcc "
                             "(default: %(default)s)")
    parser.add_argument("--tmin", type=non_negative_float("K"), default=0.0, metavar="K",
                        help="lowest temperature of the thermal properties in K, >= 0 (default: %(default)s)")
    parser.add_argument("--tmax", type=non_negative_float("K"), default=1000.0, metavar="K",
                        help="highest temperature in K, >= tmin (default: %(default)s)")
    parser.add_argument("--tstep", type=positive_float("K"), default=10.0, metavar="K",
                        help="temperature step in K, > 0 (default: %(default)s)")
    parser.add_argument("--output-dir", default="phonons", metavar="DIR",
                        help="folder for the plots and data files, created if missing (default: %(default)s)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Compute the phonons, write the files and print a summary."""
    from ase.calculators.emt import EMT

    from ..phonons import phonons
    from .structures import read_structure

    if args.tmax < args.tmin:
        raise ValueError(f"--tmax ({args.tmax} K) must be >= --tmin ({args.tmin} K)")
    atoms = read_structure(args.structure)
    temperatures = np.arange(args.tmin, args.tmax + 0.5 * args.tstep, args.tstep)
    model = EMT() if args.model.lower() == "emt" else args.model
    result = phonons(atoms, model, supercell=args.supercell, displacement=args.displacement_A, mesh=args.mesh,
                     path=args.path, temperatures=temperatures, device=args.device, dtype=args.dtype,
                     output_dir=args.output_dir)
    summary = result.summary()
    lowest, q_lowest = result.min_frequency
    thermal = summary["thermal_near_300K"]
    print(f"phonons of {summary['formula']} with {summary['model']}: primitive cell of {summary['atoms_primitive']} "
          f"atom(s), {summary['displaced_supercells']} displaced supercell(s) of {summary['atoms_supercell']} atoms, "
          f"displacement {args.displacement_A} Å")
    print("frequencies at Γ [THz]: " + " ".join(f"{round(f, 4) + 0.0:.4f}" for f in result.gamma_frequencies))
    print(f"highest frequency {result.max_frequency:.4f} THz, lowest {round(lowest, 4) + 0.0:.4f} THz at q = "
          f"({q_lowest[0]:.3f}, {q_lowest[1]:.3f}, {q_lowest[2]:.3f})")
    print(f"imaginary modes (below -{result.imaginary_tolerance} THz): {result.imaginary_modes} of "
          f"{summary['modes_on_mesh']} on the {'x'.join(map(str, result.mesh))} mesh")
    print(f"at {thermal['temperature_K']:g} K: free energy {thermal['free_energy_kJ_per_mol']:.4f} kJ/mol, entropy "
          f"{thermal['entropy_J_per_K_mol']:.4f} J/K/mol, heat capacity {thermal['heat_capacity_J_per_K_mol']:.4f} "
          "J/K/mol (per mole of primitive cells)")
    print("wrote " + ", ".join(result.files))
    return 0
