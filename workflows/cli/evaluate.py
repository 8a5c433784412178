"""``equicalc evaluate``: AdsorbML's success@k of a model on the out-of-distribution screening benchmark."""

from __future__ import annotations

import argparse
from pathlib import Path

from .arguments import positive_int
from .screen import add_screen_arguments, check_systems, run_screens, settings_from

#: the least valid fraction of a system's ground-truth relaxations for the "stable" rates
STABLE = 0.5


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Declare the ``evaluate`` command and its arguments."""
    parser = subparsers.add_parser(
        "evaluate", help="success@k of a model on the screening benchmark (ground truth by the reference)",
        description="Build the benchmark (48 adsorbate-surface systems the shipped potentials never saw: the "
                    "held-out adsorbate-metal pairs on 111 and 100 and adsorbates on the held-out 211 facet), "
                    "compute its ground truth by relaxing every placement with the reference (cached in "
                    "OUT/ground_truth/), screen it with the model (OUT/<model>/), and report AdsorbML's success "
                    "rate at k = 1..5 (best verified energy within 0.1 eV of the ground-truth minimum, or lower), "
                    "fairchem 2.x's ML-only rate and the saving in reference ionic steps, as a table and a plot.",
    )
    parser.add_argument("--out", default="benchmark", metavar="DIR",
                        help="the benchmark's folder (ground truth and screens) (default: %(default)s)")
    parser.add_argument("--systems", type=positive_int("systems"), default=None, metavar="N",
                        help="only the first N systems of the benchmark (default: all 48)")
    add_screen_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Ground truth, screen, evaluation, table and plot."""
    from ..screen.benchmark import build_ground_truth, model_folder, ood_systems, truth_store
    from ..screen.evaluation import evaluate_system, summarise
    from ..screen.plots import plot_success
    from ..screen.report import format_table, write_report
    from ..screen.store import ScreenStore

    if args.reference == "none":
        raise ValueError("evaluate needs a reference calculator for the ground truth (--reference none given)")
    if args.verify == "none":
        raise ValueError("evaluate needs verification (--verify sp or relax)")
    systems = ood_systems()[: args.systems]
    settings = settings_from(args)
    reference = check_systems(systems, args, settings)
    out = Path(args.out)
    unmade = build_ground_truth(systems, reference, out, settings)
    for name, why in unmade.items():
        print(f"no ground truth for {name} (left out): {why}")
    systems = [s for s in systems if s.name not in unmade]
    folder = out / model_folder(args.model)
    outcomes = run_screens(systems, args, settings, reference, folder=str(folder))
    write_report(outcomes, folder, settings, pictures=False)
    evaluations = [evaluate_system(o.system.name, o.result, ScreenStore(folder / f"{o.system.slug}.db")
                                   if o.result else None, truth_store(out, o.system)) for o in outcomes]
    failed = sum(o.result is None for o in outcomes)
    summaries = {}
    for label, threshold in (("all systems", 0.0), ("adsorbate stable under the reference", STABLE)):
        try:
            summary = summarise(evaluations, settings.top_k, threshold)
        except ValueError as err:
            print(f"\n{args.model}, {label}: {err}")
            continue
        summaries[f"{args.model}, {label}"] = summary
        print(f"\n{args.model}, {label}: {summary.systems} systems ({failed} failed screens count as failures), "
              f"verified by {args.reference} ({args.verify})")
        print(format_table([{"k": k, "success (%)": 100 * summary.success[k],
                             "reference saving (x)": summary.saving[k]} for k in summary.success]))
        print(f"ML-only success (|E_ML - E*| <= 0.1 eV, fairchem 2.x): {100 * summary.ml_only:.1f} %")
        if summary.excluded:
            why = "no valid ground truth" if threshold == 0 else f"under {STABLE:.0%} of the ground truth valid"
            print(f"left out ({why}): {', '.join(summary.excluded)}")
    per_system = [{"system": e.system, "E* (eV)": e.truth, "E_ML (eV)": e.ml_energy, "best@k (eV)":
                   e.best_at(settings.top_k), "success@1": e.success(1), f"success@{settings.top_k}":
                   e.success(settings.top_k), "truth valid (%)": 100 * e.truth_valid} for e in evaluations]
    print(format_table(per_system))
    if summaries:
        print(f"plot: {plot_success(folder / 'success.png', summaries)}")
    return 0
