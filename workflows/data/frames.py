"""Frames: labelled structures from relaxations, rattling and molecular dynamics, screened.

Every structure is checked before it is stored (and, outside relaxations and MD, before the
labeller sees it); a structure that fails is left out and counted under one of :data:`REASONS`.
A relaxation or MD run stops at its first rejected frame, since what follows would grow from it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import BaseCalculator
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.langevin import Langevin
from ase.optimize import LBFGS

try:  # ASE >= 3.29
    from ase.md.velocitydistribution import thermalize_momenta
except ImportError:  # ASE < 3.29: the same function under its older name
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as thermalize_momenta

MIN_DISTANCE = 0.5  # Å: closer atoms are a broken geometry
ISOLATION = 4.0  # Å: an atom with no other atom this close has flown away
MAX_FORCE = 50.0  # eV/Å: a larger force on one atom is a broken geometry or labeller

#: why a frame was left out.
REASONS: dict[str, str] = {
    "non_finite": "non-finite positions, energy, forces or stress",
    "too_close": f"two atoms closer than {MIN_DISTANCE} Å",
    "isolated_atom": f"an atom with no other atom within {ISOLATION} Å (flown away)",
    "left_cell": "an atom outside the cell along a non-periodic axis (flown away)",
    "large_force": f"a force larger than {MAX_FORCE} eV/Å",
}

RELAX_FMAX = 0.05  # eV/Å
RELAX_STEPS = 150  # optimizer steps at most
RELAX_FRAMES = 12  # frames kept per relaxation at most, evenly spaced, first and last included
RATTLE_FRAMES = 3
RATTLE_SIGMA = (0.05, 0.15)  # Å: range of the Gaussian displacement's standard deviation
MD_TEMPERATURES = (300.0, 600.0, 900.0, 1200.0)  # K
MD_TIMESTEP = 1.0  # fs
MD_FRICTION = 0.01  # 1/fs
MD_STEPS = 50
MD_INTERVAL = 10  # MD steps between stored frames
START_SIGMA = 0.05  # Å: rattle of a clean slab's or molecule's starting structure
BULK_FRAMES = 12
BULK_STRAIN = 0.03  # largest strain component
BULK_SIGMA = 0.05  # Å


@dataclass
class Frame:
    """A stored structure: atoms with a SinglePointCalculator holding energy (eV), forces on all
    atoms, fixed ones included (eV/Å), and stress (eV/Å³) when asked for; how it was made
    (``source``), its step (optimizer step, MD step, or index) and the MD temperature (K)."""

    atoms: Atoms
    source: str
    step: int
    temperature: float | None = None


def rejection(atoms: Atoms) -> str | None:
    """The geometric reason (a key of :data:`REASONS`) to leave ``atoms`` out, or ``None``."""
    if not np.all(np.isfinite(atoms.positions)):
        return "non_finite"
    if len(atoms) > 1:
        nearest = nearest_distances(atoms)
        if nearest.min() < MIN_DISTANCE:
            return "too_close"
        if nearest.max() > ISOLATION:
            return "isolated_atom"
    open_axes = ~atoms.pbc
    if np.any(open_axes) and atoms.cell.rank == 3:
        scaled = atoms.cell.scaled_positions(atoms.positions)[:, open_axes]
        if np.any((scaled < 0.0) | (scaled >= 1.0)):
            return "left_cell"
    return None


def nearest_distances(atoms: Atoms) -> np.ndarray:
    """Each atom's distance (Å) to its nearest other atom or periodic image, up to :data:`ISOLATION`
    further images ignored: exact for the cells here, whose periodic widths all exceed 4 Å."""
    periodic = atoms.pbc & (atoms.cell.rank == 3)
    if np.any(periodic):
        scaled = atoms.cell.scaled_positions(atoms.positions)
        difference = scaled[None, :, :] - scaled[:, None, :]
        difference[..., periodic] -= np.round(difference[..., periodic])
        shifts = np.array(np.meshgrid(*[(-1, 0, 1) if p else (0,) for p in periodic])).reshape(3, -1).T
        vectors = (difference[:, :, None, :] + shifts[None, None, :, :]) @ atoms.cell.array
    else:
        vectors = (atoms.positions[None, :, :] - atoms.positions[:, None, :])[:, :, None, :]
    distances = np.linalg.norm(vectors, axis=-1)
    distances[np.arange(len(atoms)), np.arange(len(atoms)), (distances.shape[2] - 1) // 2] = np.inf
    return distances.min(axis=(1, 2))


def snapshot(atoms: Atoms, with_stress: bool = False) -> tuple[Atoms | None, str | None]:
    """``atoms`` labelled by its calculator and frozen, or ``None`` and the reason it was left out.

    The geometry is checked before the calculator is asked (it may already hold the results, as
    in an optimizer's or MD's step).
    """
    reason = rejection(atoms)
    if reason is not None:
        return None, reason
    energy = atoms.get_potential_energy()
    forces = atoms.get_forces(apply_constraint=False)
    results = {"energy": energy, "forces": forces}
    if with_stress:
        results["stress"] = atoms.get_stress(apply_constraint=False)
    if not all(np.all(np.isfinite(value)) for value in results.values()):
        return None, "non_finite"
    if np.max(np.linalg.norm(forces, axis=1)) > MAX_FORCE:
        return None, "large_force"
    frozen = atoms.copy()
    frozen.calc = SinglePointCalculator(frozen, **results)
    return frozen, None


def relax(atoms: Atoms, calc: BaseCalculator, source: str, rejected: Counter) -> tuple[list[Frame], Atoms | None]:
    """Relax ``atoms`` (L-BFGS to :data:`RELAX_FMAX` eV/Å or :data:`RELAX_STEPS` steps) and keep up to
    :data:`RELAX_FRAMES` evenly spaced frames; also the last accepted frame (``None`` if even the
    first was rejected). ``atoms`` is moved."""
    atoms.calc = calc
    trajectory: list[Atoms] = []
    optimizer = LBFGS(atoms, logfile=None)
    for _ in optimizer.irun(fmax=RELAX_FMAX, steps=RELAX_STEPS):
        frame, reason = snapshot(atoms)
        if frame is None:
            rejected[reason] += 1
            break
        trajectory.append(frame)
    if not trajectory:
        return [], None
    keep = np.unique(np.linspace(0, len(trajectory) - 1, min(RELAX_FRAMES, len(trajectory))).round().astype(int))
    return [Frame(trajectory[k], source, int(k)) for k in keep], trajectory[-1]


def rattle(atoms: Atoms, calc: BaseCalculator, rng: np.random.Generator, rejected: Counter,
           source: str = "rattle") -> list[Frame]:
    """:data:`RATTLE_FRAMES` copies of ``atoms`` with Gaussian displacements of the free atoms,
    each with a standard deviation drawn from :data:`RATTLE_SIGMA` (Å)."""
    frames = []
    for index in range(RATTLE_FRAMES):
        rattled = displaced(atoms, rng, rng.uniform(*RATTLE_SIGMA))
        rattled.calc = calc
        frame, reason = snapshot(rattled)
        if frame is None:
            rejected[reason] += 1
        else:
            frames.append(Frame(frame, source, index))
    return frames


def molecular_dynamics(atoms: Atoms, calc: BaseCalculator, rng: np.random.Generator,
                       rejected: Counter) -> list[Frame]:
    """Langevin MD of ``atoms`` at a temperature drawn from :data:`MD_TEMPERATURES` (K), starting
    from Maxwell-Boltzmann velocities: a frame every :data:`MD_INTERVAL` of :data:`MD_STEPS` steps
    of :data:`MD_TIMESTEP` fs. Every step is screened; the run stops at the first rejected one
    (which is counted whether or not it would have been stored)."""
    temperature = float(MD_TEMPERATURES[rng.integers(len(MD_TEMPERATURES))])
    atoms = atoms.copy()
    atoms.calc = calc
    thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
    dynamics = Langevin(atoms, timestep=MD_TIMESTEP * units.fs, temperature_K=temperature,
                        friction=MD_FRICTION / units.fs, fixcm=False, rng=rng, logfile=None)
    frames = []
    for step, _ in enumerate(dynamics.irun(MD_STEPS)):
        frame, reason = snapshot(atoms)  # every step: a broken geometry must stop the run at once
        if frame is None:
            rejected[reason] += 1
            break
        if step > 0 and step % MD_INTERVAL == 0:
            frames.append(Frame(frame, "md", step, temperature))
    return frames


def strained_bulks(atoms: Atoms, calc: BaseCalculator, rng: np.random.Generator, rejected: Counter) -> list[Frame]:
    """:data:`BULK_FRAMES` copies of the bulk ``atoms`` under a random symmetric strain (components
    up to :data:`BULK_STRAIN`) and rattled by :data:`BULK_SIGMA` Å, with stress."""
    frames = []
    for index in range(BULK_FRAMES):
        strain = rng.uniform(-BULK_STRAIN, BULK_STRAIN, (3, 3))
        strained = displaced(atoms, rng, BULK_SIGMA)
        strained.set_cell(atoms.cell @ (np.eye(3) + 0.5 * (strain + strain.T)), scale_atoms=True)
        strained.calc = calc
        frame, reason = snapshot(strained, with_stress=True)
        if frame is None:
            rejected[reason] += 1
        else:
            frames.append(Frame(frame, "bulk", index))
    return frames


def displaced(atoms: Atoms, rng: np.random.Generator, sigma: float) -> Atoms:
    """A copy of ``atoms`` (without calculator) whose atoms not fixed by ``FixAtoms`` are moved by
    Gaussian displacements of standard deviation ``sigma`` (Å) per Cartesian component."""
    moved = atoms.copy()
    moved.set_positions(moved.positions + rng.normal(0.0, sigma, moved.positions.shape))  # constraints apply
    return moved
