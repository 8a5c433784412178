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

import numpy as np

from .result import SystemResult, referencing
from .store import ScreenStore

SUCCESS_THRESHOLD = 0.1  # eV


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
        truth_valid: the fraction of the ground-truth relaxations that are valid (the adsorbate
            stays intact and bound under the reference).
    """

    system: str
    truth: float
    ranked_reference: tuple[float, ...]
    ml_energy: float
    truth_steps: int
    ranked_steps: tuple[int, ...]
    truth_valid: float = 1.0

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


def evaluate_system(name: str, result: SystemResult | None, screen: ScreenStore | None,
                    truth: ScreenStore) -> SystemEvaluation:
    """Compare the screen of the system ``name`` (its ``result`` and ``screen`` store; None for a screen
    that failed, which then counts as a failure) with the ground truth in the store ``truth`` (rows
    ``ground_truth``, ``ref_slab`` and ``gas``, see :func:`.pipeline.ground_truth`).

    Raises:
        ValueError: the ground truth is missing, or its placements (ids or initial positions) differ
            from the screen's.
    """
    rows = truth.rows("ground_truth")
    if not rows:
        raise ValueError(f"{name}: no ground truth in {truth.path}")
    by_config = truth_energies(truth)
    energies = [e for e in by_config.values() if math.isfinite(e)]
    truth_steps = sum(r.ionic_steps for r in rows)
    best = min(energies) if energies else math.nan
    fraction = _valid_fraction(by_config)
    if result is None:
        return SystemEvaluation(name, best, (), math.nan, truth_steps, (), fraction)
    _check_same_placements(name, screen, truth)
    valid = result.valid
    return SystemEvaluation(
        system=name, truth=best,
        ranked_reference=tuple(c.reference_energy if c.verified else math.nan for c in valid),
        ml_energy=valid[0].ml_energy if valid else math.nan,
        truth_steps=truth_steps,
        ranked_steps=tuple(c.reference_steps for c in valid),
        truth_valid=fraction,
    )


def _check_same_placements(name: str, screen: ScreenStore, truth: ScreenStore) -> None:
    """``ValueError`` unless both stores hold the same placements (ids and positions within 1e-6 Å)."""
    mine = {row.config_id: row.positions for row in screen.rows("placement")}
    theirs = {row.config_id: row.positions for row in truth.rows("placement")}
    same = mine.keys() == theirs.keys() and all(
        mine[k].shape == theirs[k].shape and np.allclose(mine[k], theirs[k], atol=1e-6) for k in mine)
    if not same:
        raise ValueError(f"{name}: the ground truth's placements ({truth.path}) differ from the screen's "
                         f"({screen.path}); use the same --seed, --num-random and heuristic setting for both")


def truth_energies(truth: ScreenStore) -> dict[str, float]:
    """Ground-truth adsorption energies [eV] by ``config_id`` (NaN for anomalous or failed ones)."""
    adsorption_energy = referencing(truth, "ref_slab", "reference")
    return {row.config_id: adsorption_energy(row, row.relaxed_energy)
            if not row.anomalies and row.get("relaxed_energy") is not None else math.nan
            for row in truth.rows("ground_truth")}


def truth_valid(truth: ScreenStore) -> float:
    """The fraction of the ground-truth relaxations in ``truth`` that are valid (the adsorbate stays
    intact and bound under the reference); 0 when there are none."""
    return _valid_fraction(truth_energies(truth))


def _valid_fraction(energies: dict[str, float]) -> float:
    """The fraction of the ``energies`` (by ``config_id``) that are finite; 0 when there are none."""
    return sum(math.isfinite(e) for e in energies.values()) / len(energies) if energies else 0.0


def percent(fraction: float) -> str:
    """A threshold ``fraction`` as a percentage, exactly as given (0.125 -> '12.5%', 0.5 -> '50%')."""
    return f"{100 * fraction:g}%"


@dataclass(frozen=True)
class Summary:
    """The benchmark's rates over the systems with a ground truth: success@k for k = 1..top_k
    (AdsorbML reports 1..5, the default), the ML-only rate, the reference saving (ground-truth ionic
    steps over verification ionic steps) at each k, and the systems left out because no ground-truth
    relaxation was valid or fewer than ``min_truth_valid`` of them (:func:`summarise`)."""

    systems: int
    success: dict[int, float]
    ml_only: float
    saving: dict[int, float]
    excluded: tuple[str, ...] = ()


def summarise(evaluations: list[SystemEvaluation], top_k: int = 5, min_truth_valid: float = 0.0) -> Summary:
    """Success rates [fraction] and savings over ``evaluations`` (a failed screen is a failure; a
    system with no valid ground truth, or with a smaller valid fraction of its ground-truth
    relaxations than ``min_truth_valid``, is left out and named); ``ValueError`` when none is left.

    ``min_truth_valid`` = 0.5 keeps the systems whose adsorbate the reference itself keeps intact and
    bound from most placements: where it dissociates from most, the lowest valid energy belongs to
    whichever rare placement happened to stay intact, a minimum no screen can be asked to find."""
    counted = [e for e in evaluations if math.isfinite(e.truth) and e.truth_valid >= min_truth_valid]
    if not counted:
        raise ValueError("no system with a valid ground truth to evaluate" if min_truth_valid == 0 else
                         f"no system whose ground truth is at least {percent(min_truth_valid)} valid")
    n = len(counted)
    ks = range(1, top_k + 1)
    truth_steps = sum(e.truth_steps for e in counted)
    saving = {}
    for k in ks:
        spent = sum(sum(e.ranked_steps[:k]) for e in counted)
        saving[k] = truth_steps / spent if spent else math.inf
    return Summary(
        systems=n,
        success={k: sum(e.success(k) for e in counted) / n for k in ks},
        ml_only=sum(e.ml_success for e in counted) / n,
        saving=saving,
        excluded=tuple(e.system for e in evaluations if e not in counted),
    )
