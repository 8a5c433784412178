"""``equicalc screen``: find the lowest-energy adsorption configuration of adsorbates on surfaces (AdsorbML)."""

from __future__ import annotations

import argparse
import itertools
import math
import re
from typing import TYPE_CHECKING

from ase.data import chemical_symbols

from .arguments import (add_model_arguments, atom_indices, existing_file, non_negative_int, positive_float,
                        positive_int)

if TYPE_CHECKING:
    from ..screen.settings import ScreenSettings

DEFAULT_MODEL = "eqv2-emt-oc"


def miller_index(text: str) -> tuple[int, int, int]:
    """``--miller``: three digits (``111``, ``211``) or three comma-separated integers (``1,-1,0``), divided
    by their greatest common divisor (``2,2,2`` is the surface ``111``, and the system is named ``.../111``)."""
    parts = text.split(",") if "," in text else list(text) if re.fullmatch(r"\d{3}", text) else None
    try:
        index = tuple(int(p) for p in parts) if parts else ()
    except ValueError:
        index = ()
    if len(index) != 3:
        raise argparse.ArgumentTypeError(f"must be three digits such as 111 or three comma-separated integers "
                                         f"such as 1,-1,0, got {text!r}")
    divisor = math.gcd(*index) or 1  # (0, 0, 0) is left for cut_slab to refuse
    return tuple(h // divisor for h in index)


def gas_references(text: str) -> str | dict[str, float]:
    """``--gas-references``: ``molecule``, ``elements``, ``oc20`` or ``H=-3.477,O=-7.204,...`` [eV]."""
    if text in ("molecule", "elements", "oc20"):
        return text
    try:
        pairs = [(k.strip(), float(v)) for k, v in (item.split("=") for item in text.split(","))]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be 'molecule', 'elements', 'oc20' or element=eV pairs such as "
                                         f"'H=-3.477,O=-7.204', got {text!r}") from None
    elements = [element for element, _ in pairs]
    unknown = [element for element in elements if element not in chemical_symbols[1:]]
    repeated = sorted({element for element in elements if elements.count(element) > 1})
    if unknown or repeated:
        problem = f"unknown element(s) {unknown}" if unknown else f"element(s) given twice {repeated}"
        raise argparse.ArgumentTypeError(f"{problem} in {text!r}")
    if not all(math.isfinite(energy) for _, energy in pairs):
        raise argparse.ArgumentTypeError(f"energies must be finite, got {text!r}")
    return dict(pairs)


def add_screen_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags ``screen`` and ``evaluate`` share: model, reference, placements, relaxation, verification, Dask."""
    add_model_arguments(parser, DEFAULT_MODEL)
    parser.set_defaults(dtype="float32")
    parser.add_argument("--reference", default="emt", metavar="CALCULATOR",
                        help="the reference calculator that verifies the best configurations: 'emt', 'sevenn', "
                             "'module:Name' (any ASE calculator class or factory, e.g. 'ase.calculators.vasp:Vasp'), "
                             "or 'none' (default: %(default)s)")
    parser.add_argument("--reference-kwargs", default=None, metavar="JSON",
                        help="keyword arguments of the reference calculator, as a JSON object; keys the "
                             "calculator is known not to take are refused (those of a calculator that takes any "
                             "**kwargs, as VASP, are passed on)")
    parser.add_argument("--num-random", type=non_negative_int("placements"), default=20, metavar="N",
                        help="random surface sites per system, without duplicates (AdsorbML: 100) (default: %(default)s)")
    parser.add_argument("--no-heuristic", action="store_true",
                        help="skip the symmetry-unique on-top, bridge and hollow sites (pymatgen's AdsorbateSiteFinder)")
    parser.add_argument("--seed", type=non_negative_int("seed"), default=0,
                        help="seed of the random sites and orientations (default: 0)")
    parser.add_argument("--fmax", type=positive_float("eV/Å"), default=0.02, metavar="EV_PER_A",
                        help="ML relaxation threshold on the largest force on a free atom, eV/Å (default: %(default)s)")
    parser.add_argument("--steps", type=positive_int("steps"), default=300, metavar="N",
                        help="the most ML relaxation steps per configuration (default: %(default)s)")
    parser.add_argument("--optimizer", choices=("LBFGS", "FIRE"), default="LBFGS",
                        help="ASE's optimizer, run on all configurations at once by the batched engine for our "
                             "models (default: %(default)s)")
    parser.add_argument("--top-k", type=positive_int("configurations"), default=5, metavar="K",
                        help="how many of the lowest-energy valid configurations the reference checks (default: 5)")
    parser.add_argument("--verify", choices=("sp", "relax", "none"), default="sp",
                        help="reference single points (AdsorbML's ML+SP) or relaxations (ML+RX) (default: sp)")
    parser.add_argument("--verify-fmax", type=positive_float("eV/Å"), default=0.03, metavar="EV_PER_A",
                        help="the reference relaxations' threshold (clean slab, --verify relax), eV/Å (default: 0.03)")
    parser.add_argument("--energy", choices=("auto", "total", "adsorption"), default="auto",
                        help="what the model predicts: total energies (referenced to the relaxed clean slab and gas "
                             "references) or adsorption energies (OC20 checkpoints); auto: adsorption for fairchem "
                             "checkpoints; total or adsorption is refused for a model known to predict the other "
                             "(the shipped models: total) (default: auto)")
    parser.add_argument("--gas-references", type=gas_references, default="elements", metavar="SCHEME",
                        help="the gas-phase reference of total-energy models: 'elements' (OC20's per-element scheme, "
                             "from H2, H2O, CO, N2 relaxed with the calculator: *H against 1/2 H2, *O against "
                             "H2O - H2), 'molecule' (the adsorbate's own gas molecule relaxed alone; an isolated "
                             "atom for *H, *O, *C, *N), 'oc20' (OC20's RPBE per-element values: only for energies "
                             "on the DFT-RPBE scale) or 'H=-3.477,O=-7.204,...' in eV (default: elements)")
    parser.add_argument("--gas-source", choices=("reference", "model"), default="reference",
                        help="which calculator computes the gas references of the ML energies: the reference (as "
                             "fairchem 2.x uses DFT gas energies; right for a model trained on the reference's "
                             "energies) or the model itself; without a reference, the model (default: reference)")
    parser.add_argument("--no-intercalation", action="store_true",
                        help="do not flag intercalated configurations (the AdsorbML paper did not)")
    parser.add_argument("--workers", type=non_negative_int("processes"), default=2, metavar="N",
                        help="Dask local-cluster worker processes, one system each at a time; 0: no Dask (default: 2)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="a running Dask scheduler (tcp://host:8786), e.g. from dask-jobqueue, instead of a "
                             "local cluster")
    parser.add_argument("--gpu", action="store_true",
                        help="tasks ask for the Dask resource GPU=1 (workers started with --resources GPU=1)")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Declare the ``screen`` command and its arguments."""
    parser = subparsers.add_parser(
        "screen", help="screen adsorbate placements on surfaces (AdsorbML) and verify the best with a reference",
        description="For every surface (a bulk and a Miller index, or a slab file) and every adsorbate: place the "
                    "adsorbate on symmetry-unique and random sites, relax every placement with the ML model (our "
                    "models in one batch), leave out anomalies (dissociated, desorbed, surface changed, "
                    "intercalated), check the --top-k lowest with the reference calculator, and report the "
                    "adsorption energy. Results go to OUT/<system>.db as they are produced: rerun the same command "
                    "to resume an interrupted screen. Systems run on Dask (a local cluster by default).",
    )
    surfaces = parser.add_argument_group("surfaces (give --bulk with --miller, or --slab)")
    surfaces.add_argument("--bulk", nargs="+", default=[], metavar="BULK",
                          help="built-in bulks (Cu, Pd, Pt3Ni, ...: see 'equicalc screen --list') or bulk files "
                               "(CIF, POSCAR, extxyz)")
    surfaces.add_argument("--miller", nargs="+", type=miller_index, default=[], metavar="HKL",
                          help="Miller indices of the slabs cut from each bulk: 111, 100, 211 or 1,-1,0 (multiples "
                               "are reduced: 2,2,2 is 111)")
    surfaces.add_argument("--termination", type=non_negative_int("termination"), default=0, metavar="N",
                          help="which of the slab's terminations (pymatgen's order) (default: 0)")
    surfaces.add_argument("--slab", nargs="+", default=[], type=existing_file, metavar="FILE",
                          help="ready slab files (tags 0 subsurface / 1 surface are kept; untagged slabs are "
                               "tagged by height)")
    adsorbates = parser.add_argument_group("adsorbates")
    adsorbates.add_argument("--adsorbate", nargs="+", default=[], metavar="NAME",
                            help="built-in adsorbates (*CO, OH, ...: see --list)")
    adsorbates.add_argument("--adsorbate-file", type=existing_file, metavar="FILE",
                            help="a molecule file (xyz, extxyz, ...) to place, with --binding")
    adsorbates.add_argument("--binding", type=atom_indices, metavar="I[,J]",
                            help="the binding atoms of --adsorbate-file, counted from 0 (one, or two for bidentate)")
    parser.add_argument("--list", action="store_true", help="list the built-in bulks and adsorbates and exit")
    parser.add_argument("--out", default="screen-out", metavar="DIR",
                        help="the folder of the results, the report and the pictures (default: %(default)s)")
    add_screen_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Build the systems, screen them, print and write the report."""
    from ..screen.report import write_report

    if args.list:
        return print_catalogue()
    systems = build_systems(args)
    settings = settings_from(args)
    output_folder(args.out)
    outcomes = run_screens(systems, args, settings, check_systems(systems, args, settings))
    write_report(outcomes, args.out, settings, energy_unchecked=energy_unchecked(args, settings))
    return 0 if all(o.result is not None for o in outcomes) else 1


def output_folder(path: str) -> None:
    """Create the output folder ``path``; ``ValueError`` naming it when it is a file or cannot be made."""
    from pathlib import Path

    if not path.strip():
        raise ValueError("--out is empty: name the output folder")
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {path!r} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"--out {path!r}: cannot create the output folder ({err.strerror})") from None


def print_catalogue() -> int:
    """Print the built-in bulks and adsorbates."""
    from ..data.bulks import BULKS
    from ..screen.adsorbates import LIBRARY, library_adsorbate

    print("bulks:", " ".join(BULKS))
    print("adsorbates (binding atoms):")
    for name in LIBRARY:
        adsorbate = library_adsorbate(name)
        binding = ",".join(adsorbate.atoms[i].symbol for i in adsorbate.binding_indices)
        print(f"  *{name:8s} {binding}")
    return 0


def build_systems(args: argparse.Namespace) -> list:
    """The systems of the command line: every surface with every adsorbate, in order, each name once.

    A repeated system (``--bulk Pd Pd``, ``--miller 111 2,2,2``, ``--adsorbate CO *CO``: the same name and
    geometry) is dropped, the first kept; ``ValueError`` for two systems of one name but different geometry
    (two bulk files of one formula, ``--adsorbate CO`` with a CO ``--adsorbate-file``), before any model loads."""
    from ..screen.adsorbates import library_adsorbate, read_adsorbate
    from ..screen.settings import ScreenSystem
    from ..screen.surfaces import cut_slab, prepare_slab, read_bulk
    from .structures import read_structure

    if bool(args.bulk) != bool(args.miller):
        raise ValueError("--bulk and --miller go together: give both (or --slab)")
    if not args.bulk and not args.slab:
        raise ValueError("no surface: give --bulk with --miller, or --slab")
    if not args.adsorbate and args.adsorbate_file is None:
        raise ValueError("no adsorbate: give --adsorbate or --adsorbate-file with --binding")
    if (args.adsorbate_file is None) != (args.binding is None):
        raise ValueError("--adsorbate-file and --binding go together")
    surfaces = []
    for bulk_spec, miller in itertools.product(dict.fromkeys(args.bulk), dict.fromkeys(args.miller)):
        bulk = read_bulk(bulk_spec)
        label = bulk_spec if bulk_spec.isalnum() else bulk.get_chemical_formula()
        surfaces.append((f"{label}/{''.join(map(str, miller))}", cut_slab(bulk, miller, termination=args.termination)))
    for path in dict.fromkeys(args.slab):
        try:
            surfaces.append((path, prepare_slab(read_structure(path))))
        except ValueError as err:
            raise ValueError(f"--slab {path}: {err}") from None
    adsorbates = [library_adsorbate(name) for name in args.adsorbate]
    if args.adsorbate_file is not None:
        adsorbates.append(read_adsorbate(args.adsorbate_file, args.binding))
    systems: dict[str, ScreenSystem] = {}
    for name, slab in surfaces:
        for adsorbate in adsorbates:
            system = ScreenSystem(f"{name}/{adsorbate.name}", slab, adsorbate)
            first = systems.setdefault(system.name, system)
            if first is not system and first.fingerprint != system.fingerprint:
                raise ValueError(f"two systems are named {system.name!r} but differ in geometry (two bulk files "
                                 "of one formula, or a built-in adsorbate and an --adsorbate-file of one formula?): "
                                 "screen them in separate runs, with separate --out folders")
    return list(systems.values())


def settings_from(args: argparse.Namespace):
    """The :class:`ScreenSettings` of the command line."""
    from ..screen.anomaly import AnomalySettings
    from ..screen.settings import ScreenSettings

    return ScreenSettings(
        heuristic=not args.no_heuristic, num_random=args.num_random, seed=args.seed, fmax=args.fmax,
        max_steps=args.steps, optimizer=args.optimizer, device=args.device, dtype=args.dtype, top_k=args.top_k,
        verify="none" if args.reference == "none" else args.verify, verify_fmax=args.verify_fmax,
        energy=args.energy, gas_references=args.gas_references, gas_source=args.gas_source,
        anomaly=AnomalySettings(intercalation=not args.no_intercalation),
    )


def reference_from(args: argparse.Namespace):
    """The reference calculator's recipe, or None for ``--reference none``."""
    from ..data.labellers import resolve_labeller

    if args.reference == "none":
        if args.reference_kwargs is not None:
            raise ValueError("--reference-kwargs given with --reference none: there is no reference calculator "
                             "to pass them to")
        return None
    try:
        return resolve_labeller(args.reference, args.reference_kwargs)
    except ValueError as err:
        raise ValueError(f"--reference {args.reference} / --reference-kwargs: "
                         f"{str(err).replace('labeller ', 'calculator ')}") from None


def check_systems(systems: list, args: argparse.Namespace, settings):
    """Load the model and the reference, check ``--energy`` against what the model is known to
    predict and every system's elements against both, before any work; returns the reference's
    recipe. ``ValueError`` naming the system and what it lacks, or the contradiction."""
    from ..screen.models import energy_kind, load_screen_model
    from ..screen.pipeline import check_system

    model = load_screen_model(args.model, settings.device, settings.dtype)  # a bad model fails here, in one line
    energy_kind(model, settings.energy)
    reference = reference_from(args)
    for system in systems:
        try:
            check_system(system, model, reference if settings.verify != "none" else None)
        except ValueError as err:
            raise ValueError(f"{system.name}: {err}") from None
    return reference


def energy_unchecked(args: argparse.Namespace, settings: ScreenSettings) -> bool:
    """Whether the model does not say what its energies are (total or adsorption), so that the
    screen takes them for what ``--energy`` (or its default) says."""
    from ..screen.models import load_screen_model

    return load_screen_model(args.model, settings.device, settings.dtype).known_energy is None


def run_screens(systems: list, args: argparse.Namespace, settings, reference, folder: str | None = None) -> list:
    """Screen ``systems`` (checked by :func:`check_systems`, which gave ``reference``) on Dask (or in
    this process), printing a line as each finishes."""
    from ..screen.cluster import screen_systems

    print(f"screening {len(systems)} system{'s' if len(systems) != 1 else ''} with {args.model}"
          f"{f', verified by {args.reference}' if reference and settings.verify != 'none' else ''}; "
          f"results in {folder or args.out}/")

    def report(outcome) -> None:
        if outcome.error:
            print(f"  failed: {outcome.error}")
        else:
            print(f"  {outcome.result.summary_line()}")

    return screen_systems(systems, args.model, reference, folder or args.out, settings, workers=args.workers,
                          scheduler=args.scheduler, gpu=args.gpu, on_outcome=report)

