"""Turning what a user hands the calculator (a model, a checkpoint path, a name) into a model."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from potentials import Potential, available_models, load_checkpoint, load_model


def resolve_model(spec: Potential | str | os.PathLike) -> tuple[Potential, str]:
    """Return the model and a short JSON-friendly label for it.

    ``spec`` is a :class:`potentials.Potential`, the path of a checkpoint file, or the name of a
    registered model (see :func:`potentials.available_models`).
    """
    if isinstance(spec, Potential):
        return spec, str(spec.metadata.get("name", spec.architecture))
    if isinstance(spec, (str, os.PathLike)):
        if str(spec) in available_models():
            return load_model(str(spec)), str(spec)
        path = Path(spec)
        if path.is_file():
            return load_checkpoint(path), str(path)
        raise ValueError(
            f"{str(spec)!r} is neither a checkpoint file nor a registered model "
            f"(available: {', '.join(available_models())})"
        )
    raise TypeError(f"model must be a Potential, a checkpoint path or a model name, not {type(spec).__name__}")


def resolve_device(device: str | torch.device) -> torch.device:
    """``'auto'`` picks CUDA when available, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA device is available")
    return device


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """Accept ``'float32'``/``'float64'`` or the torch dtypes."""
    table = {"float32": torch.float32, "float64": torch.float64, torch.float32: torch.float32, torch.float64: torch.float64}
    if dtype not in table:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return table[dtype]
