"""Writing a data set: one ASE SQLite database, one transaction per system, resumable.

Each row is a frame: atoms with tags and the slab's ``FixAtoms`` constraint, a SinglePointCalculator
with energy (eV), forces on every atom, fixed ones included (eV/Å; read them with
``atoms.get_forces(apply_constraint=False)`` or ``row.forces``) and, for bulks, stress (eV/Å³),
and the key-value pairs ``split``, ``system``, ``bulk``, ``facet`` (Miller indices in parentheses, ``'(111)'``, since ASE
refuses number-like strings; ``'bulk'`` or ``'gas'``), ``adsorbate``, ``placement``,
``source``, ``step``, ``labeller`` and, for MD frames, ``temperature`` (K).

The database's metadata records the options it was made with and, for every finished system, its
frame count and rejected frames per reason, written in the same transaction as its rows. A run on
an existing database with the same options skips the finished systems and deletes the rows of any
unfinished one before redoing it; since each system's random stream depends only on (seed, system
index), the result equals an uninterrupted run.
"""

from __future__ import annotations

import multiprocessing
import os
import pathlib
from collections import Counter
from typing import Any

import ase.db
from ase.calculators.calculator import BaseCalculator
from ase.db.core import Database

from .card import write_card
from .frames import Frame
from .labellers import Labeller, check_elements, emt_elements, resolve_labeller
from .plan import SystemSpec, all_elements, plan_systems, system_rng
from .recipes import make_frames

FORMAT = "equicalc-data-1"


def generate_dataset(path: str | os.PathLike, *, seed: int = 0, size: str | int = "default",
                     labeller: str = "emt", labeller_kwargs: dict[str, Any] | str | None = None,
                     elements: frozenset[str] | set[str] | None = None, workers: int = 2,
                     progress: bool = True) -> pathlib.Path:
    """Generate (or finish) the OC20-style data set at ``path`` and its data card; return ``path``.

    ``seed`` (>= 0) fixes every random draw: the same options give the same database content.
    ``size`` is ``'tiny'`` (~300 frames), ``'small'`` (~5k), ``'default'`` (~30k) or a number of
    systems drawn from the default catalogue. ``labeller`` is ``'emt'``, ``'sevenn'`` or
    ``'module:Name'`` of an ASE calculator, built with ``labeller_kwargs`` (a dict or JSON text).
    ``elements``, the elements the structures may contain, defaults to EMT's; a system with any
    other element is left out of the plan. ``workers`` processes label systems in parallel (the
    writes keep the plan's order). ``progress`` shows a tqdm bar.

    Raises ``ValueError`` for a negative seed, an unknown size or labeller, elements the labeller
    lacks, fewer than one worker, or an existing database made with other options; ``OSError``
    when the database cannot be written.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    spec = resolve_labeller(labeller, labeller_kwargs)
    elements = check_elements(spec, emt_elements() if elements is None else elements)
    extra = sorted(elements - all_elements())
    if extra:
        raise ValueError(f"no structure of the catalogue contains {', '.join(extra)} "
                         f"(it has {', '.join(sorted(all_elements()))})")
    systems = plan_systems(size, seed, elements)
    path = pathlib.Path(path)
    options = {"format": FORMAT, "seed": seed, "size": size, "labeller": spec.name,
               "labeller_kwargs": spec.kwargs, "elements": sorted(elements), "systems": len(systems)}
    db = open_database(path, options)
    done = db.metadata.get("done", {})
    remove_unfinished(db, done)
    pending = [(index, system) for index, system in enumerate(systems) if system.system_id not in done]
    write_systems(db, pending, seed, spec, workers, progress, total=len(systems))
    write_card(path)
    return path


def open_database(path: pathlib.Path, options: dict[str, Any]) -> Database:
    """The database at ``path``, new (its metadata set to ``options``) or made with ``options``.

    ``ValueError`` if it exists with other options or is not a data set; ``OSError`` if its folder
    is missing or not writable.
    """
    folder = path.resolve().parent
    if not folder.is_dir():
        raise FileNotFoundError(2, "no such folder", str(folder))
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise PermissionError(13, "cannot write", str(path))
    db = ase.db.connect(path, type="db", append=True)
    metadata = db.metadata
    if not metadata and db.count() == 0:
        db.metadata = {**options, "done": {}}
        return db
    made_with = {key: metadata.get(key) for key in options}
    if made_with != options:
        differences = ", ".join(f"{k}={made_with[k]!r} (now {options[k]!r})" for k in options
                                if made_with[k] != options[k])
        raise ValueError(f"{path} was made with other options: {differences}; "
                         "resume with the same options or write a new database")
    return db


def remove_unfinished(db: Database, done: dict[str, Any]) -> None:
    """Delete the rows of systems not recorded as finished (a write cut short)."""
    unfinished = [row.id for row in db.select(columns=["id", "key_value_pairs"])
                  if row.get("system") not in done]
    if unfinished:
        db.delete(unfinished)


def write_systems(db: Database, pending: list[tuple[int, SystemSpec]], seed: int, labeller: Labeller,
                  workers: int, progress: bool, total: int) -> None:
    """Label the ``pending`` (index, system) pairs, ``workers`` at a time, and write each system
    in plan order, in one transaction with its record in the metadata."""
    from tqdm import tqdm

    tasks = [(index, system, seed, labeller) for index, system in pending]
    with tqdm(total=total, initial=total - len(pending), unit="system", disable=not progress,
              desc="equicalc data") as bar:
        if workers == 1 or len(tasks) <= 1:
            for task in tasks:
                write_system(db, task[1], labeller, *label_system(task))
                bar.update()
            return
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for task, result in zip(tasks, pool.imap(label_system, tasks)):
                write_system(db, task[1], labeller, *result)
                bar.update()


def write_system(db: Database, system: SystemSpec, labeller: Labeller, frames: list[Frame],
                 rejected: Counter) -> None:
    """Write the ``frames`` of ``system`` and record it as finished, in one transaction."""
    with db:
        for frame in frames:
            keys = {"split": system.split, "system": system.system_id, "bulk": system.bulk,
                    "facet": facet_key(system.facet), "adsorbate": system.adsorbate, "placement": system.placement,
                    "source": frame.source, "step": frame.step, "labeller": labeller.name}
            if frame.temperature is not None:
                keys["temperature"] = frame.temperature
            db.write(frame.atoms, **keys)
        metadata = db.metadata
        metadata["done"][system.system_id] = {"frames": len(frames), "rejected": dict(sorted(rejected.items()))}
        db.metadata = metadata


def facet_key(facet: str) -> str:
    """The ``facet`` key-value of a row: ``'(111)'`` for the facet ``'111'``; ``'bulk'``, ``'gas'`` as is."""
    return f"({facet})" if facet.isdigit() else facet


_CALCULATORS: dict[str, BaseCalculator] = {}  # per process: one calculator per labeller


def label_system(task: tuple[int, SystemSpec, int, Labeller]) -> tuple[list[Frame], Counter]:
    """The frames and rejections of the system ``task = (index, system, seed, labeller)``."""
    index, system, seed, labeller = task
    if labeller.key not in _CALCULATORS:
        _CALCULATORS[labeller.key] = labeller.calculator()
    return make_frames(system, _CALCULATORS[labeller.key], system_rng(seed, index))
