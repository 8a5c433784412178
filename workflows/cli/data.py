"""``equicalc data``: generate an OC20-style reference data set labelled by an ASE calculator."""

from __future__ import annotations

import argparse

from .arguments import non_negative_int, positive_int


def size(text: str) -> str | int:
    """A size name (``tiny``, ``small``, ``default``) or a number of systems >= 1."""
    from ..data.plan import SIZES

    if text in SIZES:
        return text
    try:
        return positive_int("systems")(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(SIZES)} or an integer >= 1 [systems], "
                                         f"got {text!r}") from None


def elements(text: str) -> list[str]:
    """A comma-separated list of element symbols."""
    symbols = [s.strip() for s in text.split(",") if s.strip()]
    if not symbols:
        raise argparse.ArgumentTypeError(f"must be element symbols separated by commas, got {text!r}")
    return symbols


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Declare the ``data`` command and its arguments."""
    parser = subparsers.add_parser(
        "data", help="generate OC20-style adsorption reference data labelled by an ASE calculator",
        description="Generate slabs of fcc metals and L1_2 alloys with adsorbates, relax them, rattle them and "
                    "run short MD, label every frame with an ASE calculator (EMT by default), and write them "
                    "with train/val/test_id/test_ood splits to one ASE SQLite database, plus a data card "
                    "(OUT.card.md, .json, .png). An interrupted run resumes when run again with the same options.",
    )
    parser.add_argument("output", metavar="OUT.db", help="the ASE database to write (or to finish)")
    parser.add_argument("--seed", type=non_negative_int("seed"), default=0, metavar="N",
                        help="random seed, >= 0; the same options give the same database (default: %(default)s)")
    parser.add_argument("--size", type=size, default="default", metavar="SIZE",
                        help="tiny (~300 frames), small (~5k), default (~30k) or a number of systems drawn from "
                             "the default catalogue (default: %(default)s)")
    parser.add_argument("--labeller", default="emt", metavar="NAME",
                        help="'emt', 'sevenn' (SevenNet-0; needs the sevenn package) or 'module:Name' of an ASE "
                             "calculator class or factory, e.g. ase.calculators.emt:EMT (default: %(default)s)")
    parser.add_argument("--labeller-kwargs", default="{}", metavar="JSON",
                        help="keyword arguments of the labeller, as a JSON object (default: %(default)s)")
    parser.add_argument("--elements", type=elements, metavar="LIST",
                        help="elements the structures may contain, comma-separated, e.g. Cu,Pt,Rh,H,C,O "
                             "(default: EMT's, Al,Cu,Ag,Au,Ni,Pd,Pt,H,C,N,O)")
    parser.add_argument("--workers", type=positive_int("processes"), default=2, metavar="N",
                        help="processes labelling systems in parallel, >= 1 (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Generate the data set and print where it and its card are."""
    from ..data import generate_dataset

    path = generate_dataset(args.output, seed=args.seed, size=args.size, labeller=args.labeller,
                            labeller_kwargs=args.labeller_kwargs, elements=args.elements,
                            workers=args.workers, progress=not args.quiet)
    print(f"wrote {path} and its data card {path}.card.md")
    return 0
