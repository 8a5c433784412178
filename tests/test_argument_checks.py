"""Bad numbers for model configs, the neighbour search and MD: a ValueError naming the argument,
never a crash, a hang, a NaN or a silently wrong number later."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from equicalc.neighbors import radius_graph
from potentials import ConfigError
from potentials.egnn import EGNNConfig
from potentials.equiformer_v2.model import EquiformerV2Config
from potentials.lj import LennardJonesConfig
from potentials.sake import SAKEConfig
from workflows.md import run_md

HCO = (1, 6, 8)
BASE = {EGNNConfig: dict(cutoff=5.0, elements=HCO), SAKEConfig: dict(cutoff=5.0, elements=HCO),
        LennardJonesConfig: {}, EquiformerV2Config: dict(cutoff=5.0, elements=HCO)}

BAD_CONFIGS = [
    # the fields every config shares
    (EGNNConfig, "max_neighbors", 0), (EGNNConfig, "max_neighbors", 2.5), (EGNNConfig, "max_neighbors", True),
    (EGNNConfig, "cutoff", math.inf), (EGNNConfig, "cutoff", "5"), (EGNNConfig, "enforce_max_neighbors_strictly", 1),
    # InvariantNetworkConfig (EGNN, SAKE)
    (EGNNConfig, "hidden", -1), (EGNNConfig, "hidden", 0), (EGNNConfig, "hidden", 8.0), (EGNNConfig, "layers", -1),
    (EGNNConfig, "avg_num_neighbors", math.nan), (EGNNConfig, "avg_num_neighbors", 0),
    (EGNNConfig, "avg_num_neighbors", True), (EGNNConfig, "envelope_exponent", -2),
    (EGNNConfig, "update_coords", "yes"),
    (SAKEConfig, "heads", 0), (SAKEConfig, "num_rbf", 0), (SAKEConfig, "polynomial_degree", 0),
    (SAKEConfig, "heads", 2.0), (SAKEConfig, "semantic_attention", None),
    # Lennard-Jones
    (LennardJonesConfig, "sigma", math.nan), (LennardJonesConfig, "sigma", 0), (LennardJonesConfig, "sigma", -3.4),
    (LennardJonesConfig, "sigma", "3.4"), (LennardJonesConfig, "epsilon", -0.01), (LennardJonesConfig, "epsilon", math.inf),
    (LennardJonesConfig, "onset", 3.0), (LennardJonesConfig, "onset", math.nan),
    # EquiformerV2
    (EquiformerV2Config, "num_heads", 0), (EquiformerV2Config, "grid_resolution", 0),
    (EquiformerV2Config, "grid_resolution", 9), (EquiformerV2Config, "grid_resolution", 19),
    (EquiformerV2Config, "lmax", 0), (EquiformerV2Config, "mmax", 5), (EquiformerV2Config, "mmax", -1),
    (EquiformerV2Config, "sphere_channels", 0), (EquiformerV2Config, "num_distance_basis", 1),
    (EquiformerV2Config, "avg_degree", 0.0), (EquiformerV2Config, "energy_std", math.nan),
    (EquiformerV2Config, "force_std", -1.0), (EquiformerV2Config, "num_layers", -1),
]


@pytest.mark.parametrize(("config", "field", "value"), BAD_CONFIGS,
                         ids=[f"{c.__name__}.{f}={v!r}" for c, f, v in BAD_CONFIGS])
def test_a_bad_config_value_is_a_config_error_naming_the_field(config: type, field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"\b{field}\b") as info:
        config(**{**BASE[config], field: value})
    assert repr(value) in str(info.value)


@pytest.mark.parametrize("config", list(BASE))
def test_defaults_and_plain_numbers_still_pass(config: type) -> None:
    config(**BASE[config])
    config(**{**BASE[config], "max_neighbors": 10**20, "cutoff": 4})


@pytest.fixture
def argon() -> tuple[torch.Tensor, ...]:
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True)
    return (torch.tensor(atoms.positions), torch.tensor(atoms.cell[:])[None], torch.tensor(atoms.pbc)[None],
            torch.zeros(len(atoms), dtype=torch.long))


@pytest.mark.parametrize(("argument", "value"), [
    ("max_neighbors", 0), ("max_neighbors", -1), ("max_neighbors", 2.5), ("max_neighbors", math.nan),
    ("max_neighbors", True), ("cutoff", math.inf), ("cutoff", math.nan), ("cutoff", 0.0), ("cutoff", -1.0),
])
def test_radius_graph_refuses_bad_arguments(argon: tuple, argument: str, value: object) -> None:
    kw = {"cutoff": 6.0, argument: value}
    cutoff = kw.pop("cutoff")
    for strict in (False, True):
        with pytest.raises(ValueError, match=argument):
            radius_graph(*argon, cutoff, strict=strict, **kw)


def test_radius_graph_takes_a_huge_cap_as_no_cap(argon: tuple) -> None:
    uncapped = radius_graph(*argon, 6.0)
    for strict in (False, True):
        capped = radius_graph(*argon, 6.0, max_neighbors=10**20, strict=strict)
        assert all(torch.equal(a, b) for a, b in zip(uncapped, capped))


def small_system(n: int = 4) -> Atoms:
    from ase.calculators.lj import LennardJones

    atoms = bulk("Ar", "fcc", a=5.26, cubic=True)[:n]
    atoms.calc = LennardJones(sigma=3.4, epsilon=0.0104, rc=6.0)
    return atoms


@pytest.mark.parametrize(("argument", "value"), [
    ("steps", -1), ("steps", 2.5), ("steps", True), ("timestep_fs", 0), ("timestep_fs", math.nan),
    ("temperature_K", -1.0), ("temperature_K", math.inf), ("friction_per_fs", -0.1), ("friction_per_fs", math.nan),
    ("interval", 0), ("interval", 1.5), ("seed", 1.5), ("seed", None),
])
def test_run_md_refuses_bad_numbers(argument: str, value: object) -> None:
    kw = {"steps": 2, argument: value}
    with pytest.raises(ValueError, match=argument):
        run_md(small_system(), **kw)


@pytest.mark.parametrize("argument", ["trajectory", "logfile"])
def test_run_md_refuses_a_file_in_a_missing_folder(tmp_path, argument: str) -> None:
    path = tmp_path / "missing" / "out"
    with pytest.raises(ValueError, match=f"{argument}.*missing"):
        run_md(small_system(), steps=1, **{argument: path})


@pytest.mark.parametrize("ensemble", ["nve", "nvt"])
def test_run_md_on_one_atom_has_no_nan(tmp_path, ensemble: str) -> None:
    log = tmp_path / "md.log"
    summary = run_md(small_system(1), steps=3, ensemble=ensemble, logfile=log, interval=1)
    assert summary.temperature_K[0] == 0.0
    assert all(math.isfinite(x) for x in (*summary.temperature_K, *summary.total_energy_eV,
                                          summary.max_drift_eV_per_atom))
    assert "nan" not in log.read_text().lower()


def test_run_md_at_zero_kelvin_has_no_nan() -> None:
    atoms = small_system()
    summary = run_md(atoms, steps=1, temperature_K=0.0)
    assert np.isfinite(atoms.get_momenta()).all() and math.isfinite(summary.temperature_K[1])


def test_run_md_on_no_atoms_says_so() -> None:
    atoms = small_system()[:0]
    with pytest.raises(ValueError, match="no atoms"):
        run_md(atoms, steps=1)
