"""Shared fixtures and helpers: seeded RNGs, random test systems, a call-counting LJ and the CLI error line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

from potentials import LennardJones

PBC_PATTERNS = [
    (True, True, True),
    (True, True, False),
    (False, True, True),
    (True, False, False),
    (False, False, True),
    (False, False, False),
    (True, False, True),
]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
    np.random.seed(0)


def random_cell(rng: np.random.Generator, scale: float, tilt: float) -> np.ndarray:
    """Lattice vectors as rows: a scaled identity plus random tilts, never near-singular."""
    while True:
        cell = scale * (np.diag(rng.uniform(0.6, 1.4, 3)) + tilt * rng.uniform(-1, 1, (3, 3)))
        if abs(np.linalg.det(cell)) > 0.2 * scale**3:
            return cell


def random_system(rng: np.random.Generator, kind: str, pbc=None, n_atoms: int | None = None) -> Atoms:
    """A random system of one of the kinds the neighbour list must handle.

    kinds: ``bulk`` (cell larger than the cutoff), ``small`` (cell smaller than the cutoff, so atoms
    see several images of themselves), ``tilted`` (strongly triclinic), ``far`` (atoms far outside
    their cell), ``nocell`` (no cell at all; pbc ignored and set False).
    """
    n = n_atoms if n_atoms is not None else int(rng.integers(1, 25))
    pbc = tuple(PBC_PATTERNS[rng.integers(len(PBC_PATTERNS))]) if pbc is None else pbc
    scale = {"bulk": 7.0, "small": 1.8, "tilted": 6.0, "far": 6.0, "nocell": 6.0}[kind]
    tilt = 0.9 if kind == "tilted" else 0.25
    cell = random_cell(rng, scale, tilt)
    frac = rng.uniform(0, 1, (n, 3))
    if kind == "far":
        frac += rng.integers(-4, 5, (n, 3))
    positions = frac @ cell
    if kind == "nocell":
        return Atoms(numbers=rng.integers(1, 10, n), positions=positions, pbc=False)
    return Atoms(numbers=rng.integers(1, 10, n), positions=positions, cell=cell, pbc=pbc)


def rattled_lj_crystal(rng: np.random.Generator, pbc=(True, True, True), repeat=(2, 2, 2), amplitude=0.1) -> Atoms:
    """A rattled fcc crystal near the LJ minimum (sigma = 1) with the given periodicity."""
    from ase.build import bulk

    atoms = bulk("Ar", "fcc", a=1.6, cubic=True).repeat(repeat)
    atoms.positions += rng.normal(0, amplitude, atoms.positions.shape)
    atoms.pbc = pbc
    if not all(pbc):
        atoms.center(vacuum=2.0, axis=[k for k in range(3) if not pbc[k]])
    return atoms


def cli_error_line(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """The one line that ``equicalc argv`` prints when it exits with code 2."""
    from workflows.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("equicalc: error: "), err
    return err


class CountingLJ(LennardJones):
    """LJ that counts its forward calls (reset ``CountingLJ.calls`` before counting)."""

    architecture = "counting_lj_test"
    calls = 0

    def forward(self, graph):
        CountingLJ.calls += 1
        return super().forward(graph)
