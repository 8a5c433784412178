"""One entry point from what a user names (a model, a registered name, a checkpoint path) to a model.

Training scripts, Dask workers and the calculator all resolve models through :func:`load_potential`,
so a string travels between processes where a module would not.
"""

from __future__ import annotations

import os
from pathlib import Path

from .base import Potential
from .checkpoint import load_checkpoint
from .registry import available_models, load_model


def load_potential(spec: Potential | str | os.PathLike) -> Potential:
    """The model ``spec`` names.

    Args:
        spec: a :class:`Potential` (returned as is), the name of a registered model
            (:func:`available_models`), or the path of a checkpoint in any registered format.

    Raises:
        ValueError: ``spec`` is a string that names neither a registered model nor a file.
        CheckpointError: the file is not a usable checkpoint.
        TypeError: ``spec`` is of another type.
    """
    if isinstance(spec, Potential):
        return spec
    if isinstance(spec, (str, os.PathLike)):
        if str(spec) in available_models():
            return load_model(str(spec))
        try:
            is_file, is_dir = Path(spec).is_file(), bool(str(spec)) and Path(spec).is_dir()
        except OSError:  # a name too long for a path, say
            is_file = is_dir = False
        if is_file:
            return load_checkpoint(spec)
        if is_dir:
            raise ValueError(f"{str(spec)!r} is a directory, not a checkpoint file")
        raise ValueError(
            f"{str(spec)!r} is neither a checkpoint file nor a registered model "
            f"(available: {', '.join(available_models())})"
        )
    raise TypeError(f"model must be a Potential, a checkpoint path or a model name, not {type(spec).__name__}")
