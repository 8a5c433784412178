"""The screen's report: a table of the systems (printed and written as CSV, failed systems with
their error) and two pictures each."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path

from .cluster import SystemOutcome
from .pipeline import STAGES
from .plots import plot_configuration, plot_energy_spread
from .result import SystemResult
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


def energy_note(energy_kind: str, settings: ScreenSettings, unchecked: bool = False) -> str:
    """How the ML adsorption energies were made: the model's own, or referenced (and to what);
    ``unchecked``: the model does not say what it predicts, so ``energy_kind`` is taken on the word
    of ``--energy`` (or its default), which the note says."""
    if energy_kind == "adsorption":
        note = "adsorption energies predicted by the model, used as they are"
    else:
        note = _referencing_note(settings)
    if unchecked:
        given = f"--energy {settings.energy}" if settings.energy != "auto" else "default"
        note += f" (taken for {energy_kind} energies by {given}: the model does not say what it predicts)"
    return note


def _referencing_note(settings: ScreenSettings) -> str:
    """How total energies become adsorption energies: the clean slab and the gas references."""
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


#: the columns of ``report.csv``: a result's row (:meth:`SystemResult.row`) and why a system failed
COLUMNS: tuple[str, ...] = (*SystemResult("", "total", []).row(), "error")


def write_report(outcomes: Sequence[SystemOutcome], out: str | os.PathLike, settings: ScreenSettings,
                 pictures: bool = True, energy_unchecked: bool = False) -> Path:
    """Print the table of the systems screened, the failed ones in one line, how the ML energies
    were made (``energy_unchecked``: see :func:`energy_note`) and the time per stage; write
    ``<out>/report.csv`` (:data:`COLUMNS`, one row per system: a failed one has its name and
    ``error`` only) and, per screened system, ``<slug>_energies.png`` (the spread over placements)
    and ``<slug>_best.png`` (the best configuration, top and side view), printing the paths of the
    pictures written. Returns the CSV's path.

    Raises:
        OSError: ``out`` cannot be written.
    """
    out = Path(out)
    results = [o.result for o in outcomes if o.result is not None]
    if results:
        print(format_table([r.row() for r in results]))
    failed = [o for o in outcomes if o.result is None]
    if failed:
        names = ", ".join(o.system.name for o in failed)
        head = "no system was screened" if not results else f"{len(failed)} of {len(outcomes)} systems failed"
        print(f"{head} ({names}): their errors are in the error column of report.csv")
    for kind in sorted({r.energy_kind for r in results}):
        print(f"ML energies: {energy_note(kind, settings, energy_unchecked)}")
    totals = {stage: sum(r.timings.get(stage, 0.0) for r in results) for stage in STAGES}
    if sum(totals.values()) > 0:
        print("time per stage (s, summed over systems): " + ", ".join(f"{s} {t:.1f}" for s, t in totals.items()))
    table = write_csv(out / "report.csv", [_csv_row(outcome) for outcome in outcomes], COLUMNS)
    print(f"table: {table}")
    if pictures:
        drawn = [path for outcome in outcomes if outcome.result is not None for path in _pictures(outcome, out)]
        if 0 < len(drawn) <= 4:
            print(f"pictures: {', '.join(map(str, drawn))}")
        elif drawn:  # a large screen: the folder and the first system's, not hundreds of paths
            print(f"pictures: {len(drawn)} in {out}/, such as {drawn[0].name} and {drawn[1].name}")
    return table


def write_csv(path: Path, rows: Sequence[dict[str, object]], columns: Sequence[str]) -> Path:
    """Write ``rows`` under the header ``columns`` to the CSV file ``path`` (a column a row lacks is an
    empty cell); returns ``path``. Raises ``OSError`` when it cannot be written."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _csv_row(outcome: SystemOutcome) -> dict[str, object]:
    """A system's row of ``report.csv``: its result's row, or its name and error (without the
    name the error begins with)."""
    if outcome.result is not None:
        return outcome.result.row()
    name = outcome.system.name
    error = outcome.error or "failed"
    return {"system": name, "error": error.removeprefix(f"{name}: ")}


def _pictures(outcome: SystemOutcome, out: Path) -> list[Path]:
    """Draw the pictures of a screened system into ``out``; returns their paths (no ``_best.png``
    without a best configuration)."""
    result, slug = outcome.result, outcome.system.slug
    anomalies = {c.config_id: list(c.anomalies) for c in result.configs}
    ml = {c.config_id: c.ml_energy for c in result.configs}
    verified = {c.config_id: c.reference_energy for c in result.configs if math.isfinite(c.reference_energy)}
    best = result.best_verified or result.best_ml
    drawn = [plot_energy_spread(out / f"{slug}_energies.png", result.system, ml, anomalies, verified,
                                best.config_id if best else None)]
    if best is not None:
        row = ScreenStore(out / f"{slug}.db").row("ml", config_id=best.config_id)
        drawn.append(plot_configuration(out / f"{slug}_best.png", row.toatoms(),
                                        f"{result.system}: {best.config_id}, E_ads {result.adsorption_energy:.3f} eV"))
    return drawn
