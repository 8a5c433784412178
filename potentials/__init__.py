"""Interatomic potentials as plain torch modules: a batched :class:`AtomGraph` in, per-atom energies out.

Nothing here knows about ASE; :mod:`equicalc` adapts these models to ``ase.Atoms``.
"""

__version__ = "0.1.0"

from . import named_models as _named_models  # noqa: F401  (registers the named models)
from .base import Potential, PotentialConfig
from .checkpoint import load_checkpoint, read_checkpoint, register_checkpoint_format, save_checkpoint
from .egnn import EGNN, EGNNConfig
from .equiformer_v2 import EquiformerV2, EquiformerV2Config
from .errors import CheckpointError, ConfigError
from .graph import AtomGraph
from .lj import LennardJones, LennardJonesConfig
from .registry import architectures, available_models, build, load_model, model_card
from .resolve import load_potential
from .sake import SAKE, SAKEConfig

__all__ = [
    "AtomGraph",
    "CheckpointError",
    "ConfigError",
    "EGNN",
    "EGNNConfig",
    "EquiformerV2",
    "EquiformerV2Config",
    "LennardJones",
    "LennardJonesConfig",
    "Potential",
    "SAKE",
    "SAKEConfig",
    "PotentialConfig",
    "architectures",
    "available_models",
    "build",
    "load_checkpoint",
    "load_model",
    "load_potential",
    "model_card",
    "read_checkpoint",
    "register_checkpoint_format",
    "save_checkpoint",
]
