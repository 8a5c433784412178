"""The results of one screened system, written as they are produced: an ASE database (SQLite) per system.

Every row is one finished piece of work, written in one transaction, so an interrupted screen
leaves only whole rows and a rerun skips what is there: nothing is done twice, nothing is lost.
Rows carry ``kind`` and, for configurations, ``config_id``:

- ``meta``: what the store was made with (data ``settings``: model, placement, relaxation and
  reference settings); a screen with other settings refuses the store instead of mixing results;
- ``placement``: an initial configuration (key ``site``);
- ``ml``: its ML relaxation (keys ``steps``, ``converged``, ``relaxed_energy``, ``anomalies``
  (comma-separated kinds, ``""`` when valid), ``error`` when it failed);
- ``ml_slab``, ``ref_slab``: the clean slab relaxed with the ML model or the reference;
- ``verify``: a reference calculation of an ML-relaxed configuration (keys ``reference_energy``,
  ``ionic_steps``, ``anomalies`` (of a reference relaxation), ``error``);
- ``ground_truth``: a reference relaxation of an initial configuration (as ``ml``, plus ``ionic_steps``);
- ``gas``: the gas-phase references of the ML model or the reference (key ``source``; data ``references``).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ase.db
import numpy as np
from ase import Atoms
from ase.db.row import AtomsRow

KINDS: tuple[str, ...] = ("meta", "placement", "ml", "ml_slab", "ref_slab", "verify", "ground_truth", "gas")


class ScreenStore:
    """The database of one system at ``path`` (created with its folder when missing)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            _create(self.path)
        self._db = ase.db.connect(str(self.path), type="db", append=True)

    def add(self, kind: str, atoms: Atoms | None = None, *, data: Mapping[str, Any] | None = None,
            **keys: Any) -> None:
        """Write one row of ``kind`` (``atoms`` with its calculator's energy and forces, if any)."""
        self.add_many(kind, [(atoms, keys)], data=[data])

    def add_many(self, kind: str, rows: Iterable[tuple[Atoms | None, Mapping[str, Any]]],
                 data: Iterable[Mapping[str, Any] | None] | None = None) -> None:
        """Write several rows of ``kind`` in one transaction: all of them or none."""
        rows = list(rows)
        data = list(data) if data is not None else [None] * len(rows)
        if kind not in KINDS:
            raise ValueError(f"unknown row kind {kind!r}: one of {', '.join(KINDS)}")
        with self._db:
            for (atoms, keys), extra in zip(rows, data):
                pairs = {"kind": kind, **{k: _plain(v) for k, v in keys.items() if v is not None}}
                self._db.write(atoms if atoms is not None else Atoms(), key_value_pairs=pairs,
                               data=dict(extra or {}))

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the store for one writer (an exclusive ``flock`` on ``<path>.writer``, released when the
        process ends, however it ends).

        Raises:
            ValueError: another process holds it (e.g. a task Dask rescheduled while the first still runs).
        """
        with open(f"{self.path}.writer", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ValueError(f"{self.path} is being written by another process; wait for it to finish "
                                 "or use another output folder") from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def claim(self, settings: Mapping[str, Any]) -> None:
        """Record what the store is made with, or check that it was made with the same.

        Raises:
            ValueError: the store holds results made with other ``settings`` (the differences named).
        """
        settings = json.loads(json.dumps(settings, sort_keys=True, default=str))
        meta = self.row("meta")
        if meta is None:
            self.add("meta", data={"settings": settings})
            return
        stored = meta.data["settings"]
        differ = sorted(k for k in set(stored) | set(settings) if stored.get(k) != settings.get(k))
        if differ:
            details = "; ".join(f"{k}: {stored.get(k)!r} there, {settings.get(k)!r} now" for k in differ)
            raise ValueError(f"{self.path} holds results made with other settings ({details}); "
                             "use another output folder or the same settings")

    def rows(self, kind: str, **keys: Any) -> list[AtomsRow]:
        """The rows of ``kind`` (and the given key values), in the order they were written."""
        return list(self._db.select(kind=kind, **keys, sort="id"))

    def row(self, kind: str, **keys: Any) -> AtomsRow | None:
        """The first row of ``kind`` with the given key values, or None."""
        found = self.rows(kind, **keys)
        return found[0] if found else None

    def config_ids(self, kind: str) -> set[str]:
        """The ``config_id`` of every row of ``kind``."""
        return {row.config_id for row in self._db.select(kind=kind, columns=["key_value_pairs"])}

    def count(self, kind: str) -> int:
        """The number of rows of ``kind``."""
        return self._db.count(kind=kind)


def _create(path: Path) -> None:
    """Create an empty, fully initialized database at ``path``, atomically: ASE creates its tables one
    statement at a time, so a process killed meanwhile would leave a file no one can open. It is built
    under a temporary name and linked into place (``os.link`` never replaces a store another process
    has just created)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    ase.db.connect(str(temporary), type="db").count()  # the first access creates the tables
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()


def _plain(value: Any) -> Any:
    """``value`` as a type ase.db stores as a key (bool, int, float, str)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    return str(value)
