"""Reading the structure files the commands take, with one clear error for a file ASE cannot read."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ase import Atoms


def _read(path: str, index: Any) -> Any:
    """``ase.io.read(path, index)``; a ``ValueError`` naming the file if it cannot be read."""
    from ase.io import read

    try:
        return read(path, index=index)
    except Exception as err:  # ase.io's many readers fail with many exception types
        raise ValueError(f"cannot read structure file {path!r} ({type(err).__name__}: {err})") from err


def read_structure(path: str) -> Atoms:
    """The last frame of the structure file ``path``; a ``ValueError`` naming the file if it cannot be read."""
    return _read(path, -1)


def read_frames(path: str) -> list[Atoms]:
    """Every frame of the structure file ``path``; a ``ValueError`` naming the file if it cannot be read or is empty."""
    frames = _read(path, ":")
    if not frames or any(len(atoms) == 0 for atoms in frames):
        raise ValueError(f"structure file {path!r} holds no structure with atoms")
    return frames
