"""The screen's report: a table of the systems (printed and written as CSV) and two pictures each."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path

from .cluster import SystemOutcome
from .pipeline import STAGES
from .plots import plot_configuration, plot_energy_spread
from .settings import ScreenSettings
from .store import ScreenStore


def format_table(rows: Sequence[dict[str, object]]) -> str:
    """``rows`` (dicts with the same keys) as an aligned text table; floats with 3 decimals."""
    if not rows:
        return "(no systems)"
    headers = list(rows[0])
    cells = [[_cell(row[h]) for h in headers] for row in rows]
    widths = [max(len(h), *(len(c[k]) for c in cells)) for k, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in cells]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "-" if not math.isfinite(value) else f"{value:.3f}"
    return str(value)


def energy_note(energy_kind: str, settings: ScreenSettings) -> str:
    """How the ML adsorption energies were made: the model's own, or referenced (and to what)."""
    if energy_kind == "adsorption":
        return "adsorption energies predicted by the model, used as they are"
    scheme = settings.gas_references
    if isinstance(scheme, dict):
        given = ", ".join(f"{element} {energy:g} eV" for element, energy in scheme.items())
        gas = f"the per-element values given ({given}; meaningful only on the scale of the energies)"
    else:
        gas = {"elements": "per-element gas references from H2, H2O, CO, N2 (OC20's scheme)",
               "molecule": "the adsorbate's own gas molecule (an isolated atom for a one-atom adsorbate)",
               "oc20": "OC20's RPBE per-element values (meaningful for DFT-RPBE-scale energies only)"}[scheme]
    source = "the reference calculator" if settings.gas_source == "reference" and settings.verify != "none" \
        else "the model"
    note = f"total energies minus the ML-relaxed clean slab's and {gas}"
    return note if not isinstance(scheme, str) or scheme == "oc20" else f"{note}, computed with {source}"


def write_report(outcomes: Sequence[SystemOutcome], out: str | os.PathLike, settings: ScreenSettings,
                 pictures: bool = True) -> Path:
    """Print the table, the failures and the time per stage; write ``<out>/report.csv`` and, per
    system, ``<slug>_energies.png`` (the spread over placements) and ``<slug>_best.png`` (the best
    configuration, top and side view). Returns the CSV's path."""
    out = Path(out)
    results = [o.result for o in outcomes if o.result is not None]
    rows = [r.row() for r in results]
    print(format_table(rows))
    for outcome in outcomes:
        if outcome.error:
            print(f"failed: {outcome.error}")
    for kind in sorted({r.energy_kind for r in results}):
        print(f"ML energies: {energy_note(kind, settings)}")
    totals = {stage: sum(r.timings.get(stage, 0.0) for r in results) for stage in STAGES}
    if sum(totals.values()) > 0:
        print("time per stage (s, summed over systems): " + ", ".join(f"{s} {t:.1f}" for s, t in totals.items()))
    table = out / "report.csv"
    with open(table, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["system"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"table: {table}")
    if pictures:
        for outcome in outcomes:
            if outcome.result is not None:
                _pictures(outcome, out)
        print(f"pictures: {out}/<system>_energies.png, {out}/<system>_best.png")
    return table


def _pictures(outcome: SystemOutcome, out: Path) -> None:
    result, slug = outcome.result, outcome.system.slug
    anomalies = {c.config_id: list(c.anomalies) for c in result.configs}
    ml = {c.config_id: c.ml_energy for c in result.configs}
    verified = {c.config_id: c.reference_energy for c in result.configs if math.isfinite(c.reference_energy)}
    best = result.best_verified or result.best_ml
    plot_energy_spread(out / f"{slug}_energies.png", result.system, ml, anomalies, verified,
                       best.config_id if best else None)
    if best is not None:
        row = ScreenStore(out / f"{slug}.db").row("ml", config_id=best.config_id)
        plot_configuration(out / f"{slug}_best.png", row.toatoms(),
                           f"{result.system}: {best.config_id}, E_ads {result.adsorption_energy:.3f} eV")
