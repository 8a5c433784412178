"""One-file checkpoints: weights, the configuration that rebuilds the model, and metadata.

The file is a ``torch.save`` of plain containers, tensors and numbers, loaded back with
``torch.load(weights_only=True)``: opening a checkpoint can never run code.

Layout (format version 1)::

    {"format": "equicalc-checkpoint", "format_version": 1,
     "architecture": str, "config": dict, "state_dict": dict[str, Tensor],
     "dtype": "float32" | "float64",   # the network's precision (optional: else that of the weights)
     "metadata": {"name", "version", "cutoff", "elements", "energy_unit", "length_unit",
                  "training": dict, ...}}

A model comes back in the precision it was saved in, bit for bit. Other checkpoint formats plug in
with :func:`register_checkpoint_format` (the fairchem 1.x importer registers itself); whatever part
of a file is malformed, opening it raises :class:`CheckpointError`.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .base import Potential
from .errors import CheckpointError, ConfigError
from .registry import build

FORMAT = "equicalc-checkpoint"
FORMAT_VERSION = 1
_DTYPES = {"float32": torch.float32, "float64": torch.float64}

#: other formats: name -> (does this payload have the format?, build the model from payload and source)
_FORMATS: dict[str, tuple[Callable[[Any], bool], Callable[[dict, str], Potential]]] = {}


def register_checkpoint_format(
    name: str, detect: Callable[[Any], bool], load: Callable[[dict, str], Potential]
) -> None:
    """Teach :func:`load_checkpoint` another checkpoint format.

    Args:
        name: the format's name, for messages.
        detect: True for a payload (what ``torch.load(weights_only=True)`` returned) of this format;
            must not raise.
        load: builds the model from the payload and a source label (the path); raises
            :class:`CheckpointError` for a payload it cannot use (any other exception is turned into one).
    """
    _FORMATS[name] = (detect, load)


def save_checkpoint(
    model: Potential, path: str | os.PathLike, *, name: str | None = None, training: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` to ``path``; ``training`` is a free-form, JSON-friendly summary.

    The weights are stored in the model's precision (``model.dtype``), the reference energies in float64.

    Raises:
        TypeError: ``model`` is not a :class:`Potential`.
        ValueError: a model in another precision than float32 or float64 (or with weights of mixed
            precision), or a ``training`` summary that is not a JSON-friendly dict: files
            :func:`load_checkpoint` could not give back as they were.
    """
    from . import __version__

    if not isinstance(model, Potential):
        raise TypeError(f"save_checkpoint needs a Potential, got {type(model).__name__}")
    precisions = _weight_dtypes(model.state_dict())
    if not {model.dtype} >= precisions or model.dtype not in _DTYPES.values():
        raise ValueError(f"checkpoints hold float32 or float64 models, not weights in {sorted(map(str, precisions))}")
    try:
        json.dumps(dict(training or {}))
    except (TypeError, ValueError) as err:
        raise ValueError(f"training must be a JSON-friendly dict: {err}") from None

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
        "dtype": str(model.dtype).removeprefix("torch."),
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
        if not _looks_like_torch_file(path):
            raise CheckpointError(f"{path} is not a readable checkpoint (not a torch file)") from None
        refused = [line.strip() for line in str(err).splitlines() if "GLOBAL" in line or "global" in line]
        detail = refused[0] if refused else str(err).splitlines()[0]
        raise CheckpointError(f"{path} holds objects a safe checkpoint may not contain ({detail})") from None
    except Exception as err:  # torch.load raises many kinds of error on a damaged or foreign file
        raise CheckpointError(f"{path} is not a readable checkpoint (corrupt or not a torch file): {err}") from None


def _looks_like_torch_file(path: Path) -> bool:
    """A zip archive (torch.save's format since torch 1.6) or a pickle (its legacy format)."""
    with open(path, "rb") as file:
        first = file.read(1)
    return zipfile.is_zipfile(path) or first == b"\x80"  # a pickle opens with its PROTO opcode


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate an equicalc checkpoint's payload without building the model."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return _validated(_safe_load(path), path)


def _validated(payload: Any, path: Path) -> dict[str, Any]:
    """The payload, once every entry has the type the format says; else :class:`CheckpointError`."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        known = " nor ".join(["an equicalc checkpoint (no 'equicalc-checkpoint' format tag)", *_FORMATS])
        raise CheckpointError(f"{path} is not {known}")
    version = payload.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version!r}; this equicalc reads version {FORMAT_VERSION}"
        )
    missing = {"architecture", "config", "state_dict", "metadata"} - payload.keys()
    if missing:
        raise CheckpointError(f"{path} lacks the entries {sorted(missing)}")
    expected = {"architecture": str, "config": dict, "state_dict": dict, "metadata": dict}
    for key, kind in expected.items():
        if not isinstance(payload[key], kind):
            raise CheckpointError(f"{path}: entry {key!r} is a {type(payload[key]).__name__}, not a {kind.__name__}")
    bad = [k for k, v in payload["state_dict"].items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        raise CheckpointError(f"{path}: state_dict entries {bad[:5]} are not named tensors")
    dtype = payload.get("dtype", "float32")
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        raise CheckpointError(f"{path}: dtype {dtype!r} is not one of {sorted(_DTYPES)}")
    return payload


def _saved_dtype(payload: dict[str, Any]) -> torch.dtype:
    """The network precision a checkpoint was saved in: its ``dtype`` entry, else that of its weights."""
    if "dtype" in payload:
        return _DTYPES[payload["dtype"]]
    weights = _weight_dtypes(payload["state_dict"])
    return weights.pop() if len(weights) == 1 else torch.get_default_dtype()


def _weight_dtypes(state_dict: dict[str, torch.Tensor]) -> set[torch.dtype]:
    """The floating-point types of a state dict's tensors, the float64 reference energies aside."""
    return {v.dtype for k, v in state_dict.items() if v.is_floating_point() and k != "atomic_energies"}


def load_checkpoint(path: str | os.PathLike) -> Potential:
    """Rebuild the model stored at ``path`` (on CPU, in eval mode, in the precision it was saved in);
    ``model.metadata`` holds its metadata.

    Reads equicalc checkpoints and every registered format (:func:`register_checkpoint_format`;
    fairchem 1.x EquiformerV2 checkpoints as compatible-mode models).

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: a corrupt or foreign file, pickled code, or any malformed entry.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    payload = _safe_load(path)
    for name, (detect, load) in _FORMATS.items():
        if detect(payload):
            return _checked(lambda: load(payload, str(path)), f"{path} ({name})")
    payload = _validated(payload, path)
    return _checked(lambda: _build(payload), str(path))


def _build(payload: dict[str, Any]) -> Potential:
    """The model of a validated equicalc payload.

    The reference energies come from the configuration (float64, the source of truth); those among
    the weights must agree with them to the precision they were stored in (files written before the
    reference energies were kept in float64 hold them in float32). A configuration written before
    ``enforce_max_neighbors_strictly`` existed had the strict cap, and keeps it.
    """
    config = dict(payload["config"])
    if config.get("max_neighbors") is not None:
        config.setdefault("enforce_max_neighbors_strictly", True)
    model = build(payload["architecture"], config).to(_saved_dtype(payload))
    state = dict(payload["state_dict"])
    stored = state.pop("atomic_energies", None)
    if stored is not None and not (
        stored.is_floating_point() and torch.equal(stored, model.atomic_energies.to(stored.dtype))
    ):
        raise CheckpointError("the reference energies of the weights differ from those of the configuration")
    expected = model.state_dict()
    cast = [k for k, v in state.items() if k in expected and v.dtype != expected[k].dtype]
    if cast:  # load_state_dict would convert them silently: ints, complex, another precision
        raise CheckpointError(
            f"weights {cast[:3]} are {state[cast[0]].dtype}, the model holds {expected[cast[0]].dtype}"
        )
    if stored is not None:
        state["atomic_energies"] = model.atomic_energies
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"weights do not match the stored configuration: {err}") from None
    model.metadata = payload["metadata"]
    return model.eval()


def _checked(load: Callable[[], Potential], source: str) -> Potential:
    """``load()``, with any error a malformed payload can cause reported as :class:`CheckpointError`."""
    try:
        return load()
    except CheckpointError as err:
        raise CheckpointError(f"{source}: {err}") from None
    except (ConfigError, TypeError, ValueError, KeyError, AttributeError, IndexError, RuntimeError) as err:
        raise CheckpointError(f"{source}: malformed checkpoint ({type(err).__name__}: {err})") from None
