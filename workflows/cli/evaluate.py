"""``equicalc evaluate``: AdsorbML's success@k of a model on the out-of-distribution screening benchmark."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from .arguments import non_negative_float, positive_int
from .screen import add_screen_arguments, check_systems, energy_unchecked, output_folder, run_screens, settings_from

#: the least valid fraction of a system's ground-truth relaxations for the "stable" rates
STABLE = 0.5


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Declare the ``evaluate`` command and its arguments."""
    parser = subparsers.add_parser(
        "evaluate", help="success@k of a model on a screening benchmark (ground truth by the reference)",
        description="Build a benchmark of adsorbate-surface systems the shipped potentials never saw ('ood', 48 "
                    "systems: the 9 held-out adsorbate-metal pairs on 111 and 100 and 30 chosen pairs on the held-out "
                    "211 facet; 'confirm': other pairs on 211 in a random order, the first 48 by default), compute "
                    "its ground truth by relaxing every placement with the reference (cached in OUT/ground_truth/), "
                    "screen with the model the systems with a valid ground truth (OUT/<model>/), and report "
                    "AdsorbML's success rate at k = 1 to --top-k, 5 by default (best verified energy within 0.1 eV of the ground-truth "
                    "minimum, or lower), fairchem 2.x's ML-only rate and the saving in reference ionic steps, as a "
                    "table and a plot.",
    )
    parser.add_argument("--benchmark", choices=("ood", "confirm"), default="ood",
                        help="which benchmark (default: %(default)s)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="the benchmark's folder (ground truth and screens) (default: benchmark for ood, "
                             "benchmark-confirm for confirm)")
    parser.add_argument("--systems", type=positive_int("systems"), default=None, metavar="N",
                        help="the first N systems of the benchmark (default: 48, all of ood; confirm's random "
                             "order has 157, and a larger N extends a smaller one's systems)")
    parser.add_argument("--min-truth-valid", type=non_negative_float("fraction"), default=0.0, metavar="F",
                        help="screen only the systems whose ground truth is valid (adsorbate intact and bound under "
                             f"the reference) for at least this fraction of the placements, decided before the model "
                             f"runs; {STABLE} is the report's 'stable' subset (default: %(default)s: every system "
                             "with at least one valid ground-truth relaxation)")
    add_screen_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Ground truth, screen, evaluation, table and plot."""
    from ..screen.benchmark import benchmark_systems, build_ground_truth, model_folder, truth_store
    from ..screen.evaluation import evaluate_system, percent, summarise, truth_valid
    from ..screen.plots import plot_success
    from ..screen.report import format_table, write_csv, write_report
    from ..screen.store import ScreenStore

    if args.reference == "none":
        raise ValueError("evaluate needs a reference calculator for the ground truth (--reference none given)")
    if args.verify == "none":
        raise ValueError("evaluate needs verification (--verify sp or relax)")
    if args.min_truth_valid > 1:
        raise ValueError(f"--min-truth-valid is a fraction of the placements, 0 to 1, got {args.min_truth_valid}")
    systems = benchmark_systems(args.benchmark, args.systems)
    settings = settings_from(args)
    out = args.out if args.out is not None else "benchmark" if args.benchmark == "ood" else f"benchmark-{args.benchmark}"
    output_folder(out)
    out = Path(out)
    reference = check_systems(systems, args, settings)
    unmade = build_ground_truth(systems, reference, out, settings, workers=args.workers, scheduler=args.scheduler)
    systems = [s for s in systems if s.name not in unmade]
    valid = {s.name: truth_valid(truth_store(out, s)) for s in systems}
    below = [s.name for s in systems if valid[s.name] == 0 or valid[s.name] < args.min_truth_valid]
    print(f"{len(systems) - len(below)} of {len(systems)} systems have a ground truth "
          + (f"at least {percent(args.min_truth_valid)} valid" if args.min_truth_valid else "with a valid relaxation")
          + (f"; left out before the screen: {', '.join(f'{n} ({percent_down(valid[n])})' for n in below)}"
             if below else ""))
    systems = [s for s in systems if s.name not in below]
    if not systems:
        raise ValueError("no system is left to screen")
    folder = out / model_folder(args.model)
    outcomes = run_screens(systems, args, settings, reference, folder=str(folder))
    write_report(outcomes, folder, settings, pictures=False, energy_unchecked=energy_unchecked(args, settings))
    evaluations = [evaluate_system(o.system.name, o.result, ScreenStore(folder / f"{o.system.slug}.db")
                                   if o.result else None, truth_store(out, o.system)) for o in outcomes]
    failed = sum(o.result is None for o in outcomes)
    summaries = {}
    first = "all systems" if args.min_truth_valid == 0 else f"ground truth at least {percent(args.min_truth_valid)} valid"
    tables = [(first, 0.0)] + ([("adsorbate stable under the reference", STABLE)]
                               if args.min_truth_valid < STABLE else [])
    for label, threshold in tables:
        try:
            summary = summarise(evaluations, settings.top_k, threshold)
        except ValueError as err:
            print(f"\n{args.model}, {label}: {err}")
            continue
        summaries[f"{args.model}, {label}"] = summary
        print(f"\n{args.model}, {label}: {summary.systems} system{'s' if summary.systems != 1 else ''}, "
              f"verified by {args.reference} ({args.verify}); failed screens ({failed}) count as failures")
        print(format_table([{"k": k, "success (%)": 100 * summary.success[k],
                             "reference saving (x)": summary.saving[k]} for k in summary.success]))
        print(f"ML-only success (|E_ML - E*| <= 0.1 eV, fairchem 2.x): {100 * summary.ml_only:.1f} %")
        if summary.excluded:
            why = "no valid ground truth" if threshold == 0 else f"under {percent(STABLE)} of the ground truth valid"
            print(f"left out ({why}): {', '.join(summary.excluded)}")
    per_system = [{"system": e.system, "E* (eV)": e.truth, "E_ML (eV)": e.ml_energy, "best@k (eV)":
                   e.best_at(settings.top_k), "success@1": e.success(1), f"success@{settings.top_k}":
                   e.success(settings.top_k), "truth valid (%)": 100 * e.truth_valid} for e in evaluations]
    print(format_table(per_system))
    print(f"per-system table: {write_csv(folder / 'evaluation.csv', per_system, list(per_system[0]))}")
    if summaries:
        print(f"plot: {plot_success(folder / 'success.png', summaries)}")
    return 0


def percent_down(fraction: float) -> str:
    """``fraction`` as a percentage rounded down to 0.1 %, so that one under a threshold never reads
    as the threshold (0.4996 -> '49.9%')."""
    return f"{math.floor(1000 * fraction + 1e-9) / 10:.1f}%"

