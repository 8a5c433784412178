"""The integrators behind each ensemble name: ASE's, built from parameters in fs, K and GPa.

``nve``: velocity Verlet. NVT: ``langevin`` (Langevin with friction γ, ASE's propagator of
Vanden-Eijnden & Ciccotti, Chem. Phys. Lett. 429, 310, 2006; the centre of mass is thermostatted
too, so all 3N degrees of freedom are canonical), ``bussi`` (stochastic velocity rescaling, Bussi, Donadio & Parrinello, J. Chem. Phys.
126, 014101, 2007), ``nhc`` (Nosé-Hoover chain, Martyna, Klein & Tuckerman, J. Chem. Phys. 97,
2635, 1992). NPT: ``npt-mtk`` (Martyna-Tobias-Klein barostat with Nosé-Hoover chains, J. Chem.
Phys. 101, 4177, 1994; ASE's ``IsotropicMTKNPT`` or, with ``anisotropic``, ``MTKNPT``) and
``npt-berendsen`` (Berendsen et al., J. Chem. Phys. 81, 3684, 1984; ASE's ``NPTBerendsen`` or
``Inhomogeneous_NPTBerendsen``). Langevin, Bussi and Nosé-Hoover chains sample the canonical
ensemble; Berendsen does not (its fluctuations are too small), which is why it is only the simple
option for NPT, good for equilibrating a volume.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms, units
from ase.md.bussi import Bussi
from ase.md.langevin import Langevin
from ase.md.md import MolecularDynamics
from ase.md.nose_hoover_chain import IsotropicMTKNPT, MTKNPT, NoseHooverChainNVT
from ase.md.nptberendsen import Inhomogeneous_NPTBerendsen, NPTBerendsen
from ase.md.verlet import VelocityVerlet

ENSEMBLES = ("nve", "langevin", "bussi", "nhc", "npt-mtk", "npt-berendsen")
NPT_ENSEMBLES = ("npt-mtk", "npt-berendsen")
ALIASES = {"nvt": "langevin"}  # the name of the Langevin option before there were three thermostats
LABELS = {"nve": "NVE", "langevin": "NVT-Langevin", "bussi": "NVT-Bussi", "nhc": "NVT-NHC",
          "npt-mtk": "NPT-MTK", "npt-berendsen": "NPT-Berendsen"}


def canonical_ensemble(ensemble: str) -> str:
    """``ensemble`` as one of :data:`ENSEMBLES` (``'nvt'`` is ``'langevin'``).

    Raises:
        ValueError: an unknown name, listing the known ones.
    """
    name = ALIASES.get(ensemble, ensemble) if isinstance(ensemble, str) else ensemble
    if name not in ENSEMBLES:
        raise ValueError(f"ensemble must be one of {ENSEMBLES} (or 'nvt' = 'langevin'), got {ensemble!r}")
    return name


def has_pressure(atoms: Atoms) -> bool:
    """Whether ``atoms`` has a pressure: periodic along all three axes, with a calculator that gives stress."""
    return bool(atoms.pbc.all()) and "stress" in getattr(atoms.calc, "implemented_properties", ())


def check_ensemble(atoms: Atoms, ensemble: str, temperature_K: float, pressure_GPa: float | None) -> None:
    """Refuse a combination the integrator of ``ensemble`` cannot run.

    Raises:
        ValueError: a thermostat other than Langevin at 0 K; an NPT ensemble on a system that is not
            periodic along all three axes, with a calculator without stress, with constraints
            (``npt-mtk``: ASE's MTK integrators have none), or without ``pressure_GPa``;
            ``pressure_GPa`` given to an ensemble that has no barostat.
    """
    if ensemble in ("bussi", "nhc", *NPT_ENSEMBLES) and temperature_K == 0:
        raise ValueError(f"temperature_K must be positive for the {ensemble} thermostat, got 0")
    if ensemble not in NPT_ENSEMBLES:
        if pressure_GPa is not None:
            raise ValueError(f"pressure_GPa is used only by the NPT ensembles {NPT_ENSEMBLES}, "
                             f"not by {ensemble!r}")
        return
    if pressure_GPa is None:
        raise ValueError(f"{ensemble} needs a target pressure: give pressure_GPa")
    if not atoms.pbc.all():
        raise ValueError(f"{ensemble} needs a system periodic along all three axes, got pbc={atoms.pbc.tolist()}")
    if not has_pressure(atoms):
        raise ValueError(f"{ensemble} needs stress, which the calculator {type(atoms.calc).__name__} does not give")
    if ensemble == "npt-mtk" and atoms.constraints:
        raise ValueError("npt-mtk: ASE's MTK integrators do not support constraints; remove "
                         f"{[type(c).__name__ for c in atoms.constraints]} or use npt-berendsen")


def bulk_modulus_GPa(atoms: Atoms, strain: float = 0.01) -> float:
    """The bulk modulus B = -V dP/dV of ``atoms`` at its positions, by a central difference [GPa].

    Two evaluations of the attached calculator on copies of ``atoms`` with every length scaled by
    ``1 ± strain`` (atoms moved with the cell); used for the Berendsen barostat's compressibility
    1/B, which sets only how fast it responds (its time constant is ``taup`` for the right B).

    Raises:
        ValueError: B is not positive (the structure is mechanically unstable there).
    """
    pressures, volumes = [], []
    for scale in (1 - strain, 1 + strain):
        probe = atoms.copy()
        probe.set_cell(atoms.cell * scale, scale_atoms=True)
        probe.calc = atoms.calc
        pressures.append(-np.trace(probe.get_stress(voigt=False)) / 3)
        volumes.append(probe.get_volume())
    modulus = -atoms.get_volume() * (pressures[1] - pressures[0]) / (volumes[1] - volumes[0]) / units.GPa
    if not modulus > 0:
        raise ValueError(f"cannot estimate the compressibility for npt-berendsen: the bulk modulus at the start "
                         f"is {modulus:.3g} GPa; give compressibility_per_GPa")
    return float(modulus)


def make_integrator(
    atoms: Atoms,
    ensemble: str,
    *,
    timestep_fs: float,
    temperature_K: float,
    pressure_GPa: float | None = None,
    friction_per_fs: float = 0.01,
    tdamp_fs: float = 100.0,
    pdamp_fs: float = 1000.0,
    compressibility_per_GPa: float | None = None,
    anisotropic: bool = False,
    rng: np.random.Generator | None = None,
) -> MolecularDynamics:
    """ASE's integrator for ``ensemble`` on ``atoms`` (checked with :func:`check_ensemble` first;
    the numbers are taken as they are: :func:`workflows.md.run_md` checks their ranges).

    Args:
        ensemble: one of :data:`ENSEMBLES`.
        timestep_fs: time step [fs].
        temperature_K: the thermostat's target [K] (unused by ``nve``).
        pressure_GPa: the barostat's target [GPa] (NPT only; 1 GPa = 10 kbar).
        friction_per_fs: Langevin friction γ [1/fs].
        tdamp_fs: thermostat time constant [fs]: Bussi's τ_T, the Nosé-Hoover chain's and
            Berendsen's (ASE recommends about 100 time steps).
        pdamp_fs: barostat time constant [fs]: MTK's and Berendsen's τ_P (ASE recommends about
            1000 time steps).
        compressibility_per_GPa: Berendsen's compressibility [1/GPa]; None: 1/B from
            :func:`bulk_modulus_GPa` at the start.
        anisotropic: NPT cell degrees of freedom: False, the volume alone (shape kept); True, the
            full cell for ``npt-mtk`` (``MTKNPT``) and the three cell lengths independently for
            ``npt-berendsen`` (``Inhomogeneous_NPTBerendsen``, angles kept).
        rng: the random numbers of the Langevin and Bussi thermostats.

    Raises:
        ValueError: as :func:`check_ensemble`, or from :func:`bulk_modulus_GPa`.
    """
    check_ensemble(atoms, ensemble, temperature_K, pressure_GPa)
    dt = timestep_fs * units.fs
    if ensemble == "nve":
        return VelocityVerlet(atoms, timestep=dt)
    if ensemble == "langevin":
        # fixcm=False: ASE's fixcm=True is deprecated (3.28) as it does not sample NVT exactly
        return Langevin(atoms, timestep=dt, temperature_K=temperature_K, friction=friction_per_fs / units.fs,
                        rng=rng, fixcm=False)
    if ensemble == "bussi":
        return Bussi(atoms, timestep=dt, temperature_K=temperature_K, taut=tdamp_fs * units.fs, rng=rng)
    if ensemble == "nhc":
        return NoseHooverChainNVT(atoms, timestep=dt, temperature_K=temperature_K, tdamp=tdamp_fs * units.fs)
    pressure_au = pressure_GPa * units.GPa
    if ensemble == "npt-mtk":
        mtk = MTKNPT if anisotropic else IsotropicMTKNPT
        return mtk(atoms, timestep=dt, temperature_K=temperature_K, pressure_au=pressure_au,
                   tdamp=tdamp_fs * units.fs, pdamp=pdamp_fs * units.fs)
    if compressibility_per_GPa is None:
        compressibility_per_GPa = 1 / bulk_modulus_GPa(atoms)
    berendsen = Inhomogeneous_NPTBerendsen if anisotropic else NPTBerendsen
    return berendsen(atoms, timestep=dt, temperature_K=temperature_K, pressure_au=pressure_au,
                     taut=tdamp_fs * units.fs, taup=pdamp_fs * units.fs,
                     compressibility_au=compressibility_per_GPa / units.GPa)
