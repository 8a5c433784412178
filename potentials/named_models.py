"""Ready-to-use models, loadable by name (``EquiCalculator("lj-argon")``).

Trained models ship as checkpoints in ``weights/``, each with a model card ``weights/<name>.json``
(``{"name", "file", "summary", ...}``); every card found there registers its model.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from .checkpoint import load_checkpoint
from .lj import LennardJones, LennardJonesConfig
from .registry import register_model

# Argon: sigma = 3.405 Å, epsilon / k_B = 119.8 K (Rahman, Phys. Rev. 136, A405 (1964)).
ARGON_EPSILON_EV = 119.8 * 8.617333262e-5

register_model(
    "lj-argon",
    lambda: LennardJones(
        LennardJonesConfig(sigma=3.405, epsilon=ARGON_EPSILON_EV, cutoff=8.5, smooth=True, elements=(18,))
    ),
    "Lennard-Jones argon (Rahman 1964), smooth cutoff at 8.5 Å",
)

WEIGHTS = Path(__file__).parent / "weights"

for _card_path in sorted(WEIGHTS.glob("*.json")):
    _card = json.loads(_card_path.read_text())
    register_model(_card["name"], partial(load_checkpoint, WEIGHTS / _card["file"]), _card["summary"], _card)
