"""One-file checkpoints: weights, the configuration that rebuilds the model, and metadata.

The file is a ``torch.save`` of plain containers, tensors and numbers, loaded back with
``torch.load(weights_only=True)``: opening a checkpoint can never run code.

Layout (format version 1)::

    {"format": "equicalc-checkpoint", "format_version": 1,
     "architecture": str, "config": dict, "state_dict": dict[str, Tensor],
     "metadata": {"name", "version", "cutoff", "elements", "energy_unit", "length_unit",
                  "training": dict, ...}}
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from .base import Potential
from .errors import CheckpointError, ConfigError
from .registry import build

FORMAT = "equicalc-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(
    model: Potential, path: str | os.PathLike, *, name: str | None = None, training: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` to ``path``; ``training`` is a free-form, JSON-friendly summary."""
    from . import __version__

    metadata = {
        "name": name or model.architecture,
        "version": __version__,
        "cutoff": model.cutoff,
        "elements": list(model.elements),
        "energy_unit": "eV",
        "length_unit": "Å",
        "training": dict(training or {}),
    }
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": model.architecture,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": metadata,
    }
    path = Path(path)
    torch.save(payload, path)
    return path


def _safe_load(path: Path) -> Any:
    """``torch.load`` in weights-only mode, allowing only numpy's scalar and dtype records besides."""
    import numpy as np

    allowed = [np.dtype, *(type(np.dtype(t)) for t in ("float32", "float64", "int64", "bool"))]
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            allowed.append(__import__(module, fromlist=["scalar"]).scalar)
        except (ImportError, AttributeError):
            pass
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"{path} holds objects a safe checkpoint may not contain ({err})") from None
    except Exception as err:  # torch.load raises many kinds of error on a damaged or foreign file
        raise CheckpointError(f"{path} is not a readable checkpoint (corrupt or not a torch file): {err}") from None


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate an equicalc checkpoint's payload without building the model."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return _validated(_safe_load(path), path)


def _validated(payload: Any, path: Path) -> dict[str, Any]:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not an equicalc checkpoint (no '{FORMAT}' format tag) nor a fairchem 1.x EquiformerV2 one"
        )
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version!r}; this equicalc reads version {FORMAT_VERSION}"
        )
    missing = {"architecture", "config", "state_dict", "metadata"} - payload.keys()
    if missing:
        raise CheckpointError(f"{path} lacks the entries {sorted(missing)}")
    return payload


def load_checkpoint(path: str | os.PathLike) -> Potential:
    """Rebuild the model stored at ``path`` (on CPU, in eval mode); ``model.metadata`` holds its metadata.

    Reads equicalc checkpoints and fairchem 1.x EquiformerV2 checkpoints (as compatible-mode models).
    """
    from .equiformer_v2.fairchem_import import is_fairchem_checkpoint, load_fairchem

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    payload = _safe_load(path)
    if is_fairchem_checkpoint(payload):
        return load_fairchem(payload, str(path))
    payload = _validated(payload, path)
    try:
        model = build(payload["architecture"], payload["config"])
    except ConfigError as err:
        raise CheckpointError(f"{path}: {err}") from None
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not match the stored configuration: {err}") from None
    model.metadata = payload["metadata"]
    return model.eval()
