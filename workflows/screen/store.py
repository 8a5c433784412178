"""The results of one screened system, written as they are produced: an ASE database (SQLite) per system.

Every row is one finished piece of work, written in one transaction, so an interrupted screen
leaves only whole rows and a rerun skips what is there: nothing is done twice, nothing is lost.
Rows carry ``kind`` and, for configurations, ``config_id``:

- ``placement``: an initial configuration (key ``site``);
- ``ml``: its ML relaxation (keys ``steps``, ``converged``, ``ml_fmax``, ``anomalies`` (comma-separated
  kinds, ``""`` when valid), ``error`` when it failed);
- ``ml_slab``, ``ref_slab``: the clean slab relaxed with the ML model or the reference;
- ``verify``: a reference calculation of an ML-relaxed configuration (keys ``calls``, ``ionic_steps``,
  ``error``);
- ``ground_truth``: a reference relaxation of an initial configuration (as ``ml``, plus ``calls``);
- ``gas``: the gas-phase references of the ML model or the reference (key ``source``; data ``references``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import ase.db
import numpy as np
from ase import Atoms
from ase.db.row import AtomsRow

KINDS: tuple[str, ...] = ("placement", "ml", "ml_slab", "ref_slab", "verify", "ground_truth", "gas")


class ScreenStore:
    """The database of one system at ``path`` (created with its folder when missing)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
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


def _plain(value: Any) -> Any:
    """``value`` as a type ase.db stores as a key (bool, int, float, str)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    return str(value)
