"""AdsorbML's evaluation: success@k against a ground truth and the saving in reference calls.

For each system the ground truth E* is the lowest adsorption energy over the reference's own
relaxations of every placement (valid ones only, as OC20-Dense releases). A screen succeeds at k
when the lowest reference energy among its k lowest-ML-energy valid configurations is within
0.1 eV of E* or lower: Ê_k - E* <= 0.1 eV (Lan et al., npj Comput. Mater. 9, 172 (2023); fairchem's
``dense_eval.py``). A system with no valid configuration fails. The ML-only rate is fairchem 2.x's
(``AdsorbMLReducer``): |E_ML - E*| <= 0.1 eV for the lowest-ML-energy configuration, no
verification. The saving is the reference's ionic steps of the ground truth over those of the
verification of the top k.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .result import SystemResult, referencing
from .store import ScreenStore

SUCCESS_THRESHOLD = 0.1  # eV
KS: tuple[int, ...] = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class SystemEvaluation:
    """One system's screen against its ground truth.

    Attributes:
        system: the system's name.
        truth: E*, the lowest valid ground-truth adsorption energy [eV] (NaN: none valid).
        ranked_reference: the reference adsorption energies [eV] of the valid configurations in
            ML order (NaN where the reference failed or was not asked).
        ml_energy: the lowest valid ML adsorption energy [eV].
        truth_steps: the reference's ionic steps over every ground-truth relaxation.
        ranked_steps: the reference's ionic steps of each verification, in ML order.
    """

    system: str
    truth: float
    ranked_reference: tuple[float, ...]
    ml_energy: float
    truth_steps: int
    ranked_steps: tuple[int, ...]

    def best_at(self, k: int) -> float:
        """Ê_k: the lowest reference energy among the first ``k`` valid configurations [eV]."""
        finite = [e for e in self.ranked_reference[:k] if math.isfinite(e)]
        return min(finite) if finite else math.nan

    def success(self, k: int) -> bool:
        """Ê_k - E* <= 0.1 eV."""
        best = self.best_at(k)
        return math.isfinite(best) and math.isfinite(self.truth) and best - self.truth <= SUCCESS_THRESHOLD

    @property
    def ml_success(self) -> bool:
        """|E_ML - E*| <= 0.1 eV (fairchem 2.x's ML-only success)."""
        return math.isfinite(self.ml_energy) and abs(self.ml_energy - self.truth) <= SUCCESS_THRESHOLD


def evaluate_system(result: SystemResult, truth: ScreenStore) -> SystemEvaluation:
    """Compare the screen ``result`` with the ground truth in the store ``truth`` (rows
    ``ground_truth``, ``ref_slab`` and ``gas``, see :func:`.pipeline.ground_truth`).

    Raises:
        ValueError: the ground truth is missing or its placements differ from the screen's.
    """
    rows = truth.rows("ground_truth")
    if not rows:
        raise ValueError(f"{result.system}: no ground truth in {truth.path}")
    if {r.config_id for r in rows} != {c.config_id for c in result.configs}:
        raise ValueError(f"{result.system}: the ground truth's placements differ from the screen's "
                         f"({truth.path}); rebuild one of them with the same placement settings")
    energies = [e for e in truth_energies(truth).values() if math.isfinite(e)]
    valid = result.valid
    return SystemEvaluation(
        system=result.system,
        truth=min(energies) if energies else math.nan,
        ranked_reference=tuple(c.reference_energy for c in valid),
        ml_energy=valid[0].ml_energy if valid else math.nan,
        truth_steps=sum(r.calls for r in rows),
        ranked_steps=tuple(c.reference_steps for c in valid),
    )


def truth_energies(truth: ScreenStore) -> dict[str, float]:
    """Ground-truth adsorption energies [eV] by ``config_id`` (NaN for anomalous or failed ones)."""
    adsorption_energy = referencing(truth, "ref_slab", "reference")
    return {row.config_id: adsorption_energy(row, row.relaxed_energy)
            if not row.anomalies and row.get("relaxed_energy") is not None else math.nan
            for row in truth.rows("ground_truth")}


@dataclass(frozen=True)
class Summary:
    """The benchmark's rates over systems: success@k for each k of :data:`KS`, the ML-only rate,
    and the reference saving (ground-truth ionic steps over verification ionic steps) at each k."""

    systems: int
    success: dict[int, float]
    ml_only: float
    saving: dict[int, float]


def summarise(evaluations: list[SystemEvaluation]) -> Summary:
    """Success rates [fraction] and savings over ``evaluations``; ``ValueError`` when empty."""
    if not evaluations:
        raise ValueError("no systems to evaluate")
    n = len(evaluations)
    truth_steps = sum(e.truth_steps for e in evaluations)
    saving = {}
    for k in KS:
        spent = sum(sum(e.ranked_steps[:k]) for e in evaluations)
        saving[k] = truth_steps / spent if spent else math.inf
    return Summary(
        systems=n,
        success={k: sum(e.success(k) for e in evaluations) / n for k in KS},
        ml_only=sum(e.ml_success for e in evaluations) / n,
        saving=saving,
    )
