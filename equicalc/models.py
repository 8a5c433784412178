"""Turning what a user hands the calculator (a model, a checkpoint path, a name) into a model."""

from __future__ import annotations

import copy
import os

import torch

from potentials import Potential, load_potential


def resolve_model(spec: Potential | str | os.PathLike) -> tuple[Potential, str]:
    """Return the model and a short JSON-friendly label for it.

    ``spec`` is a :class:`potentials.Potential`, the path of a checkpoint file, or the name of a
    registered model (see :func:`potentials.load_potential`).
    """
    model = load_potential(spec)
    label = str(model.metadata.get("name", model.architecture)) if isinstance(spec, Potential) else str(spec)
    return model, label


def prepare_model(model: Potential, device: torch.device, dtype: torch.dtype, *, owned: bool) -> Potential:
    """``model`` on ``device`` in ``dtype`` and in eval mode, never changing a model its caller holds.

    A model the caller does not otherwise hold (``owned``, e.g. just loaded from a checkpoint) is
    converted in place; a caller's model is used as it is when it already matches, else copied first.
    """
    if not owned and (model.device != device or model.dtype != dtype or model.training):
        model = copy.deepcopy(model)
    return model.to(device=device, dtype=dtype).eval()


def resolve_device(device: str | torch.device) -> torch.device:
    """``'auto'`` picks CUDA when available, else CPU; ``'cpu'``, ``'cuda'`` and ``'cuda:N'`` are taken as they are.

    Raises:
        ValueError: any other device (a typo, ``'mps'``, ``'meta'``, a non-string), or a CUDA device
            this machine does not have.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from err
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {device!r} requested but no CUDA device is available")
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(f"device {device!r} requested but this machine has {count} CUDA device(s)")
        if resolved.index is None:  # the current device, by index: a model already there compares equal
            resolved = torch.device("cuda", torch.cuda.current_device())
    return resolved


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """Accept ``'float32'``/``'float64'`` or the torch dtypes."""
    table = {"float32": torch.float32, "float64": torch.float64, torch.float32: torch.float32, torch.float64: torch.float64}
    if dtype not in table:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return table[dtype]
