"""The batched relaxation engine: each structure follows ASE's FIRE / LBFGS trajectory exactly.

The oracle is ASE's own optimizer driving :class:`equicalc.EquiCalculator` with the same model,
one structure at a time.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import fcc100, fcc111
from ase.constraints import FixBondLength
from ase.optimize import FIRE, LBFGS

from equicalc import EquiCalculator
from potentials import EquiformerV2, EquiformerV2Config, LennardJones, LennardJonesConfig
from workflows.data.adsorbates import place_adsorbate
from workflows.data.slabs import make_slab, tag_and_fix
from workflows.relax import relax_batch

ASE_OPTIMIZERS = {"FIRE": FIRE, "LBFGS": LBFGS}
#: a short L-BFGS memory, so that the histories wrap around within the test
OPTIONS = {"FIRE": {}, "LBFGS": {"memory": 4}}
FMAX = 0.05  # eV/Å


def adslab(builder, symbol: str, size: tuple[int, int, int], adsorbate: str, seed: int) -> Atoms:
    """An OC20-style slab: tags 0 (subsurface, fixed) / 1 (surface) / 2 (adsorbate), rattled."""
    slab = tag_and_fix(builder(symbol, size, vacuum=6.0))
    atoms = place_adsorbate(slab, adsorbate, np.random.default_rng(seed))
    atoms.rattle(0.05, seed=seed)
    return atoms


def small_adslabs() -> list[Atoms]:
    """Four adsorbate-on-slab systems of 9 to 20 atoms with fixed subsurface atoms (the last holds N)."""
    return [
        adslab(fcc111, "Cu", (2, 2, 4), "O", 1),
        adslab(fcc100, "Pt", (2, 2, 2), "H", 2),
        adslab(fcc111, "Ag", (3, 2, 3), "C", 3),
        adslab(fcc111, "Au", (2, 2, 3), "N", 4),
    ]


def lennard_jones(**overrides) -> LennardJones:
    """LJ with its minimum near Cu's nearest-neighbour distance (2.55 Å), every element alike."""
    return LennardJones(LennardJonesConfig(sigma=2.3, epsilon=0.4, cutoff=5.0, smooth=True, **overrides)).double()


def ase_relax(atoms: Atoms, calc: EquiCalculator, optimizer: str, steps: int, **options) -> tuple[Atoms, bool, int]:
    """ASE's optimizer on one structure: final atoms, converged, steps."""
    atoms = atoms.copy()
    atoms.calc = calc
    opt = ASE_OPTIMIZERS[optimizer](atoms, logfile=None, **options)
    converged = opt.run(fmax=FMAX, steps=steps)
    return atoms, converged, opt.nsteps


@pytest.fixture(scope="module")
def sake() -> EquiCalculator:
    return EquiCalculator("sake-emt-oc", device="cpu", dtype="float64")


@pytest.fixture(scope="module", params=["FIRE", "LBFGS"])
def relaxed(request):
    """Batched and ASE relaxations of the small systems with LJ: full ones, and two cut after 6 steps;
    a budget of 40 atoms, so that structures leave and join the batch as they go."""
    optimizer = request.param
    structures = small_adslabs()
    limits = [300, 6, 300, 6]
    model = lennard_jones()
    results = list(relax_batch(structures, model, optimizer=optimizer, fmax=FMAX, max_steps=limits,
                               device="cpu", max_atoms=40, optimizer_kwargs=OPTIONS[optimizer]))
    calc = EquiCalculator(model, device="cpu", dtype="float64")
    reference = [ase_relax(a, calc, optimizer, n, **OPTIONS[optimizer]) for a, n in zip(structures, limits)]
    return optimizer, structures, results, reference


def test_each_structure_follows_ase_trajectory(relaxed) -> None:
    _, structures, results, reference = relaxed
    by_index = {r.index: r for r in results}
    for k, (atoms, converged, steps) in enumerate(reference):
        r = by_index[k]
        assert r.error is None
        assert (r.steps, r.converged) == (steps, converged)
        assert np.abs(r.atoms.positions - atoms.positions).max() < 1e-8  # Å
        assert abs(r.atoms.get_potential_energy() - atoms.get_potential_energy()) < 1e-3  # eV
        assert len(r.energies) == len(r.fmaxes) == r.steps + 1
    assert [by_index[k].converged for k in range(4)] == [True, False, True, False]  # the cut ones did not converge
    assert min(by_index[0].steps, by_index[2].steps) > 4 * OPTIONS["LBFGS"]["memory"]  # L-BFGS memory wrapped


@pytest.mark.parametrize("optimizer", ["FIRE", "LBFGS"])
def test_trained_model_follows_ase_trajectory(optimizer: str, sake) -> None:
    """sake-emt-oc on slabs with CO and OH: positions and energies after 8 steps as ASE's."""
    structures = [adslab(fcc111, "Cu", (2, 2, 3), "CO", 5), adslab(fcc100, "Pt", (2, 2, 2), "OH", 6),
                  adslab(fcc111, "Ni", (3, 2, 3), "H", 7)]
    results = {r.index: r for r in relax_batch(structures, sake.model, optimizer=optimizer, max_steps=8,
                                               device="cpu", optimizer_kwargs=OPTIONS[optimizer])}
    for k, atoms in enumerate(structures):
        final, converged, steps = ase_relax(atoms, sake, optimizer, 8, **OPTIONS[optimizer])
        assert (results[k].steps, results[k].converged) == (steps, converged)
        assert np.abs(results[k].atoms.positions - final.positions).max() < 1e-8
        assert abs(results[k].energies[-1] - final.get_potential_energy()) < 1e-6


def test_fixed_atoms_never_move_and_fmax_counts_free_atoms_only(relaxed) -> None:
    _, structures, results, _ = relaxed
    fixed_force = []
    for r in results:
        start = structures[r.index]
        fixed = start.constraints[0].get_indices()
        assert len(fixed) > 0
        assert np.array_equal(r.atoms.positions[fixed], start.positions[fixed])
        forces = r.atoms.get_forces(apply_constraint=False)
        free = np.setdiff1d(np.arange(len(start)), fixed)
        assert r.fmax == pytest.approx(np.linalg.norm(forces[free], axis=1).max(), rel=1e-12)
        if r.converged:
            fixed_force.append(np.linalg.norm(forces[fixed], axis=1).max())
    assert min(fixed_force) > 5 * FMAX  # converged although the fixed atoms feel large forces


def test_results_stream_in_finishing_order(relaxed) -> None:
    _, structures, results, _ = relaxed
    order = [r.index for r in results]
    assert sorted(order) == list(range(len(structures)))
    assert order != sorted(order)  # the 6-step structures finish before the first one
    steps = [r.steps for r in results]
    assert steps[0] <= 6


class NaNOnNitrogen(LennardJones):
    """LJ whose energy is NaN for every structure with a nitrogen atom."""

    def forward(self, graph):
        energies = super().forward(graph)["energies"]
        return {"energies": torch.where(graph.numbers == 7, torch.nan, energies)}


def test_non_finite_structure_is_reported_and_others_converge() -> None:
    structures = small_adslabs()  # the fourth holds an N atom
    results = {r.index: r for r in relax_batch(structures, NaNOnNitrogen(LennardJonesConfig(
        sigma=2.3, epsilon=0.4, cutoff=5.0, smooth=True)).double(), fmax=FMAX, max_steps=300, device="cpu")}
    assert results[3].error == "non-finite energy or forces at step 0"
    assert not results[3].converged and results[3].steps == 0
    assert all(results[k].converged and results[k].error is None for k in range(3))


def test_refused_geometry_is_reported_and_others_converge() -> None:
    structures = small_adslabs()
    structures[1].positions[-1] = structures[1].positions[-2]  # two atoms at one place
    results = {r.index: r for r in relax_batch(structures, lennard_jones(), fmax=FMAX, max_steps=300, device="cpu")}
    assert "coincide" in results[1].error and not results[1].converged
    assert np.isnan(results[1].energies[-1]) and results[1].atoms.calc is None
    assert all(results[k].converged for k in (0, 2, 3))


@pytest.mark.parametrize("optimizer", ["FIRE", "LBFGS"])
def test_direct_force_model_follows_ase(optimizer: str) -> None:
    torch.manual_seed(0)
    model = EquiformerV2(EquiformerV2Config(
        cutoff=4.5, elements=(1, 6, 7, 8, 29, 47, 78, 79), mode="compatible", max_neighbors=12, num_layers=1, lmax=2,
        mmax=1, sphere_channels=8, attn_hidden_channels=8, num_heads=2, attn_alpha_channels=4,
        attn_value_channels=4, ffn_hidden_channels=8, edge_channels=8, num_distance_basis=16, grid_resolution=6,
        energy_std=0.3,
    )).double()
    assert model.direct_forces
    structures = small_adslabs()[:3]
    results = {r.index: r for r in relax_batch(structures, model, optimizer=optimizer, max_steps=5, device="cpu")}
    with pytest.warns(UserWarning, match="direct head"):
        calc = EquiCalculator(model, device="cpu", dtype="float64")
    for k, atoms in enumerate(structures):
        final, _, steps = ase_relax(atoms, calc, optimizer, 5)
        assert results[k].steps == steps
        assert np.abs(results[k].atoms.positions - final.positions).max() < 1e-8


def test_structure_larger_than_the_budget_runs_alone() -> None:
    structures = small_adslabs()
    alone = list(relax_batch(structures, lennard_jones(), optimizer="LBFGS", max_steps=20, device="cpu", max_atoms=1))
    together = {r.index: r for r in relax_batch(structures, lennard_jones(), optimizer="LBFGS", max_steps=20,
                                                device="cpu")}
    assert [r.index for r in alone] == [0, 1, 2, 3]  # one at a time, in input order
    for r in alone:
        assert np.abs(r.atoms.positions - together[r.index].atoms.positions).max() < 1e-10


def test_out_of_memory_splits_the_batch(monkeypatch) -> None:
    """A batch too large for the device's memory is evaluated in halves, and fewer structures join."""
    import workflows.relax.engine as engine

    structures = small_adslabs()
    together = {r.index: r for r in relax_batch(structures, lennard_jones(), max_steps=15, device="cpu")}
    batches = []

    def predict_within_30_atoms(model, systems, **kwargs):
        batches.append(len(systems.positions))
        if len(systems.positions) > 30:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return engine_predict(model, systems, **kwargs)

    engine_predict = engine.predict
    monkeypatch.setattr(engine, "predict", predict_within_30_atoms)
    split = {r.index: r for r in relax_batch(structures, lennard_jones(), max_steps=15, device="cpu")}
    assert batches[0] == sum(len(a) for a in structures) and max(batches[1:]) <= 30
    for k, r in split.items():
        assert np.abs(r.atoms.positions - together[k].atoms.positions).max() < 1e-10


@pytest.mark.parametrize("kwargs, message", [
    ({"fmax": 0.0}, "fmax must be positive"),
    ({"fmax": float("nan")}, "fmax must be positive"),
    ({"optimizer": "BFGS"}, "optimizer must be one of FIRE, LBFGS"),
    ({"max_steps": -1}, "max_steps must be"),
    ({"max_steps": [5, 5]}, "max_steps: 2 limits for 4 structures"),
    ({"max_atoms": 0}, "max_atoms must be"),
    ({"optimizer_kwargs": {"maxmove": 0.1}}, "FIRE has no parameter 'maxmove'"),
    ({"optimizer": "LBFGS", "optimizer_kwargs": {"maxstep": 2.0}}, "at most 1 Å"),
    ({"device": "gpu"}, "device must be"),
])
def test_bad_arguments_are_refused_at_the_call(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        relax_batch(small_adslabs(), lennard_jones(), **kwargs)  # no iteration needed


def test_bad_structures_are_refused_by_index() -> None:
    with pytest.raises(ValueError, match="structures: empty"):
        relax_batch([], lennard_jones())
    structures = small_adslabs()
    structures[2].set_constraint(FixBondLength(0, 1))
    with pytest.raises(ValueError, match="structure 2: the batched engine honours FixAtoms constraints only"):
        relax_batch(structures, lennard_jones())
    structures = small_adslabs()
    structures[1].positions[0, 0] = np.nan
    with pytest.raises(ValueError, match="structure 1: positions contain NaN"):
        relax_batch(structures, lennard_jones())
    with pytest.raises(ValueError, match="structure 0: model .* does not know element.*O"):
        relax_batch(small_adslabs(), lennard_jones(elements=(29, 47, 78, 79)))
    with pytest.raises(ValueError, match="structure 1: no atoms"):
        relax_batch([small_adslabs()[0], Atoms()], lennard_jones())


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["FIRE", "LBFGS"])
def test_oc20_adslabs_relax_as_alone(optimizer: str, sake) -> None:
    """Full-size slabs of the data workflow (37-38 atoms) to convergence: same steps and energies."""
    rng = np.random.default_rng(7)
    structures = [place_adsorbate(make_slab(b, f), a, rng) for b, f, a in
                  (("Cu", "111", "CO"), ("Pt", "100", "OH"), ("Ni", "110", "H"))]
    results = {r.index: r for r in relax_batch(structures, sake.model, optimizer=optimizer, max_steps=300,
                                               device="cpu")}
    for k, atoms in enumerate(structures):
        final, converged, steps = ase_relax(atoms, sake, optimizer, 300)
        assert converged and results[k].converged
        assert results[k].steps == steps
        assert abs(results[k].energies[-1] - final.get_potential_energy()) < 1e-3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    structures = small_adslabs()
    on = {device: {r.index: r for r in relax_batch(structures, "sake-emt-oc", optimizer="LBFGS", max_steps=10,
                                                   device=device)} for device in ("cpu", "cuda")}
    for k in range(len(structures)):
        assert on["cuda"][k].steps == on["cpu"][k].steps
        assert np.abs(on["cuda"][k].atoms.positions - on["cpu"][k].atoms.positions).max() < 1e-8
