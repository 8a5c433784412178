"""What a screen reports for one system, read from its store: energies, anomalies, the verified best."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from ase.db.row import AtomsRow

from .references import adsorbate_reference
from .settings import ScreenSettings
from .store import ScreenStore


@dataclass(frozen=True)
class ConfigResult:
    """One configuration: ``ml_energy`` and ``reference_energy`` are adsorption energies [eV] (NaN
    when there is none); ``anomalies`` the kinds found (empty: valid)."""

    config_id: str
    site: str
    ml_energy: float
    anomalies: tuple[str, ...]
    converged: bool
    steps: int
    reference_energy: float = math.nan
    reference_steps: int = 0
    reference_anomalies: tuple[str, ...] = ()
    reference_error: str | None = None

    @property
    def valid(self) -> bool:
        """No anomaly and a finite ML energy: the configuration takes part in the ranking."""
        return not self.anomalies and math.isfinite(self.ml_energy)

    @property
    def verified(self) -> bool:
        """The reference checked it and gave a finite energy with no anomaly (``--verify relax``)."""
        return math.isfinite(self.reference_energy) and not self.reference_anomalies


@dataclass
class SystemResult:
    """A screened system.

    Attributes:
        system: its name, e.g. ``'Pd/111/CO'``.
        energy_kind: ``'total'`` (ML energies referenced to the ML-relaxed clean slab and gas
            references) or ``'adsorption'`` (the model's energies are adsorption energies).
        configs: every configuration, valid ones first by ML energy, then the anomalous ones.
        reference_calls, ionic_steps: the reference's calculations (single points or
            relaxations) of configurations, and their ionic steps (a single point is one).
        slab_steps: the reference's ionic steps on the clean slab (once per system; not counted
            in ``ionic_steps``, as AdsorbML leaves the slab out of its saving).
        timings: wall time [s] per stage of the call that produced this result.
    """

    system: str
    energy_kind: str
    configs: list[ConfigResult]
    reference_calls: int = 0
    ionic_steps: int = 0
    slab_steps: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def valid(self) -> list[ConfigResult]:
        """The valid configurations, by ML energy."""
        return [c for c in self.configs if c.valid]

    @property
    def anomaly_counts(self) -> dict[str, int]:
        """How many configurations have each anomaly kind."""
        return dict(Counter(kind for c in self.configs for kind in c.anomalies))

    @property
    def best_ml(self) -> ConfigResult | None:
        """The valid configuration of lowest ML energy."""
        return self.valid[0] if self.valid else None

    @property
    def best_verified(self) -> ConfigResult | None:
        """The verified configuration of lowest reference energy (AdsorbML's answer)."""
        verified = [c for c in self.configs if c.verified]
        return min(verified, key=lambda c: c.reference_energy) if verified else None

    @property
    def adsorption_energy(self) -> float:
        """The screen's adsorption energy [eV]: the best verified one, else the best ML one, else NaN."""
        best = self.best_verified
        if best is not None:
            return best.reference_energy
        return self.best_ml.ml_energy if self.best_ml is not None else math.nan

    def summary_line(self) -> str:
        """One line: valid configurations, the answer and where it comes from, or why there is none."""
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(self.anomaly_counts.items()))
        head = f"{self.system}: {len(self.valid)}/{len(self.configs)} valid" + (f" ({counts})" if counts else "")
        best = self.best_verified
        if best is not None:
            return f"{head}, E_ads {best.reference_energy:.3f} eV ({best.config_id}, verified)"
        if self.best_ml is not None:
            return f"{head}, E_ads {self.best_ml.ml_energy:.3f} eV ({self.best_ml.config_id}, ML only, not verified)"
        return f"{head}, no valid configuration"

    def row(self) -> dict[str, object]:
        """The system's line of the report table."""
        best_ml, best = self.best_ml, self.best_verified
        return {
            "system": self.system,
            "placements": len(self.configs),
            "valid": len(self.valid),
            "anomalies": " ".join(f"{k}:{n}" for k, n in sorted(self.anomaly_counts.items())) or "-",
            "best ML": best_ml.config_id if best_ml else "-",
            "E_ads ML (eV)": best_ml.ml_energy if best_ml else "-",
            "best verified": best.config_id if best else "-",
            "E_ads verified (eV)": best.reference_energy if best else "-",
            "reference calls": self.reference_calls,
            "ionic steps": self.ionic_steps,
            "slab steps": self.slab_steps,
        }


def system_result(name: str, store: ScreenStore, settings: ScreenSettings, energy_kind: str) -> SystemResult:
    """The :class:`SystemResult` of the system ``name`` from what ``store`` holds."""
    sites = {row.config_id: row.site for row in store.rows("placement")}
    ml_energy = referencing(store, "ml_slab", "ml") if energy_kind == "total" else (lambda row, e: e)
    reference_energy = referencing(store, "ref_slab", "reference")
    verified = {row.config_id: row for row in store.rows("verify")}
    configs = []
    for row in store.rows("ml"):
        check = verified.get(row.config_id)
        configs.append(ConfigResult(
            config_id=row.config_id, site=sites.get(row.config_id, "?"),
            ml_energy=ml_energy(row, row.get("relaxed_energy", math.nan)),
            anomalies=tuple(a for a in row.anomalies.split(",") if a),
            converged=bool(row.converged), steps=int(row.steps),
            reference_energy=reference_energy(check, check.get("reference_energy", math.nan))
            if check is not None else math.nan,
            reference_steps=check.ionic_steps if check is not None else 0,
            reference_anomalies=tuple(a for a in check.get("anomalies", "").split(",") if a) if check else (),
            reference_error=check.get("error") if check is not None else None,
        ))
    configs.sort(key=lambda c: (not c.valid, c.ml_energy if math.isfinite(c.ml_energy) else math.inf, c.config_id))
    ref_slab = store.row("ref_slab")
    return SystemResult(
        system=name, energy_kind=energy_kind, configs=configs,
        reference_calls=len(verified),
        ionic_steps=sum(row.ionic_steps for row in verified.values()),
        slab_steps=ref_slab.ionic_steps if ref_slab is not None else 0,
    )


def referencing(store: ScreenStore, slab_kind: str, source: str) -> Callable[[AtomsRow, float], float]:
    """The map from a configuration's total energy E [eV] (a row of ``store``) to its adsorption
    energy E - E(relaxed clean slab, row ``slab_kind``) - E_gas, with the gas reference of ``source``:
    the adsorbate molecule's energy, or Σ ε_Z over its adsorbate atoms (tag 2); NaN when the slab or
    the reference is missing."""
    slab, gas = store.row(slab_kind), store.row("gas", source=source)
    if slab is None or slab.get("energy") is None or gas is None:
        return lambda row, energy: math.nan
    if "molecule" in gas.data:
        return lambda row, energy: energy - slab.energy - gas.data["molecule"]
    references = gas.data["references"]

    def adsorption_energy(row: AtomsRow, energy: float) -> float:
        symbols = [s for s, tag in zip(row.symbols, row.toatoms().get_tags()) if tag == 2]
        return energy - slab.energy - adsorbate_reference(symbols, references)

    return adsorption_energy
