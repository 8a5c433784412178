"""The radius graph against ASE's neighbour list, exactly, over a randomized battery."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.neighborlist import neighbor_list

from equicalc import SystemBatch, radius_graph
from tests.conftest import random_system

KINDS = ["bulk", "small", "tilted", "far", "nocell"]
DTYPES = [torch.float32, torch.float64]


def ase_pairs(atoms: Atoms, cutoff: float) -> set[tuple[int, int, int, int, int]]:
    i, j, s = neighbor_list("ijS", atoms, cutoff)
    return {(a, b, *c) for a, b, c in zip(i.tolist(), j.tolist(), s.tolist())}


def our_pairs(systems: list[Atoms], cutoff: float, dtype: torch.dtype, **kw) -> list[set]:
    batch = SystemBatch.from_atoms(systems, dtype=dtype, device="cpu")
    edge_index, shifts = radius_graph(batch.positions, batch.cell, batch.pbc, batch.batch, cutoff, **kw)
    offsets = np.cumsum([0] + [len(a) for a in systems])
    system_of_edge = batch.batch[edge_index[0]].numpy()
    out = [set() for _ in systems]
    for (i, j), s, b in zip(edge_index.T.tolist(), shifts.tolist(), system_of_edge):
        out[b].add((i - offsets[b], j - offsets[b], *s))
    return out


def as_dtype(atoms: Atoms, dtype: torch.dtype) -> Atoms:
    """The same system with positions and cell rounded to ``dtype``, as our graph sees them."""
    rounded = atoms.copy()
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    rounded.positions = atoms.positions.astype(np_dtype).astype(np.float64)
    rounded.cell = atoms.cell.array.astype(np_dtype).astype(np.float64)
    return rounded


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("kind", KINDS)
def test_battery_matches_ase_exactly(kind: str, dtype: torch.dtype) -> None:
    """48 random systems per kind and dtype (480 in all), each batch of 8 in one call."""
    rng = np.random.default_rng(hash((kind, str(dtype))) % 2**32)
    n_checked = 0
    for _ in range(6):
        cutoff = float(rng.uniform(1.0, 5.0))
        systems = [as_dtype(random_system(rng, kind), dtype) for _ in range(8)]
        for atoms, ours in zip(systems, our_pairs(systems, cutoff, dtype)):
            assert ours == ase_pairs(atoms, cutoff), f"{kind} pbc={atoms.pbc} cutoff={cutoff}"
            n_checked += 1
    assert n_checked == 48


@pytest.mark.parametrize("kind", ["small", "far"])
def test_pairs_finished_in_many_blocks_match_ase(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pairs finished a few at a time (blocks of 7 pairs across the search's chunks) land in the
    right places of the output, self pairs dropped and shifts right, as in one block; here every
    output is mapped the way large ones are (huge pages), in batches and for single systems."""
    from equicalc import neighbors

    monkeypatch.setattr(neighbors, "_PAIR_BLOCK", 7)
    monkeypatch.setattr(neighbors, "_HUGE_OUTPUT", 1)
    rng = np.random.default_rng(7)
    systems = [random_system(rng, kind) for _ in range(8)]
    for atoms, ours in zip(systems, our_pairs(systems, 3.0, torch.float64)):
        assert ours == ase_pairs(atoms, 3.0)
    for atoms in systems[:3]:
        assert our_pairs([atoms], 3.0, torch.float64)[0] == ase_pairs(atoms, 3.0)


def test_inference_mode_gives_the_same_pairs() -> None:
    """Under ``torch.inference_mode()`` (thread-local) the pairs finished on worker threads are
    written into inference tensors: the result equals ASE's, in batches and for one system."""
    rng = np.random.default_rng(11)
    systems = [random_system(rng, "bulk", n_atoms=300) for _ in range(3)]
    with torch.inference_mode():
        batched = our_pairs(systems, 4.0, torch.float64)
        single = our_pairs(systems[:1], 4.0, torch.float64)[0]
    assert batched == [ase_pairs(atoms, 4.0) for atoms in systems]
    assert single == batched[0]


def test_small_cell_sees_own_images() -> None:
    """One atom in a 2 Å cubic cell with a 5 Å cutoff: every image within 5 Å is a neighbour."""
    atoms = Atoms("H", positions=[[0.3, 0.2, 0.1]], cell=np.eye(3) * 2.0, pbc=True)
    ours = our_pairs([atoms], 5.0, torch.float64)[0]
    shells = itertools.product(range(-3, 4), repeat=3)
    expected = {(0, 0, *s) for s in shells if 0 < 2.0 * np.linalg.norm(s) < 5.0}
    assert ours == expected and len(ours) == 80  # lattice points of Z^3 with 0 < |s| < 2.5


def test_many_neighbors_are_never_truncated() -> None:
    """Dense system with over 500 neighbours per atom (torch-cluster's default cap is 32)."""
    rng = np.random.default_rng(1)
    atoms = Atoms("H64", positions=rng.uniform(0, 4, (64, 3)), cell=np.eye(3) * 4, pbc=True)
    ours = our_pairs([atoms], 6.0, torch.float64)[0]
    assert ours == ase_pairs(atoms, 6.0)
    assert len(ours) / 64 > 500


def test_nearest_k_cap_is_deterministic_and_nearest() -> None:
    """The k nearest per centre; distance ties broken by neighbour index, then shift."""
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.6).repeat((2, 2, 2))  # 12 nearest neighbours, all tied
    batch = SystemBatch.from_atoms(atoms, dtype=torch.float64, device="cpu")
    edge_index, shifts = radius_graph(batch.positions, batch.cell, batch.pbc, batch.batch, 6.0, max_neighbors=5)
    assert torch.bincount(edge_index[0]).tolist() == [5] * len(atoms)
    i, j, d, S = neighbor_list("ijdS", atoms, 6.0)
    for centre in range(len(atoms)):
        mine = edge_index[0] == centre
        ours = sorted(zip(edge_index[1][mine].tolist(), *shifts[mine].T.tolist()))
        nearest = (i == centre) & np.isclose(d, d[i == centre].min())
        tied = sorted(zip(j[nearest].tolist(), *S[nearest].T.tolist()))
        assert len(tied) == 12 and ours == tied[:5]
    again, _ = radius_graph(batch.positions, batch.cell, batch.pbc, batch.batch, 6.0, max_neighbors=5)
    assert torch.equal(again, edge_index)


def test_nearest_k_cap_matches_sorted_distances() -> None:
    rng = np.random.default_rng(3)
    atoms = random_system(rng, "bulk", pbc=(True, True, False), n_atoms=20)
    batch = SystemBatch.from_atoms(atoms, dtype=torch.float64, device="cpu")
    edge_index, shifts = radius_graph(batch.positions, batch.cell, batch.pbc, batch.batch, 5.0, max_neighbors=7)
    i, d = neighbor_list("id", atoms, 5.0)
    vectors = batch.positions[edge_index[1]] - batch.positions[edge_index[0]] + shifts.double() @ batch.cell[0]
    lengths = vectors.norm(dim=1).numpy()
    for centre in range(len(atoms)):
        expected = np.sort(d[i == centre])[:7]
        assert np.allclose(np.sort(lengths[edge_index[0].numpy() == centre]), expected, rtol=0, atol=1e-12)


def test_edge_vectors_are_differentiable_in_positions_and_cell() -> None:
    from potentials import AtomGraph

    rng = np.random.default_rng(4)
    atoms = random_system(rng, "small", pbc=(True, True, True), n_atoms=3)
    batch = SystemBatch.from_atoms(atoms, dtype=torch.float64, device="cpu")
    edge_index, shifts = radius_graph(batch.positions, batch.cell, batch.pbc, batch.batch, 3.0)

    def lengths(positions: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        graph = AtomGraph(positions, batch.numbers, cell, batch.pbc, batch.batch, edge_index, shifts.double())
        return graph.edge_lengths

    pos = batch.positions.clone().requires_grad_()
    cell = batch.cell.clone().requires_grad_()
    assert torch.autograd.gradcheck(lengths, (pos, cell))


@pytest.mark.parametrize(
    ("atoms", "message"),
    [
        (Atoms("H2", positions=[[0, 0, 0], [np.nan, 0, 0]]), "NaN or infinite"),
        (Atoms("H", cell=[[1, 0, 0], [0, 1, 0], [0, 0, np.inf]], pbc=False), "cell contains NaN"),
        (Atoms("H", cell=[[3, 0, 0], [0, 3, 0], [0, 0, 0]], pbc=True), "axis 2 has a zero-length cell vector"),
        (Atoms("H", cell=[[3, 0, 0], [6, 0, 0], [0, 0, 3]], pbc=True), "degenerate"),
        (Atoms("H", cell=[[3, 0, 0], [6, 0, 0], [0, 0, 3]], pbc=(True, True, False)), "degenerate"),
        (Atoms("H", cell=[[1e-6, 0, 0], [0, 3, 0], [0, 0, 3]], pbc=True), "too small for the cutoff"),
    ],
)
def test_bad_geometry_is_refused_with_a_clear_error(atoms: Atoms, message: str) -> None:
    batch = SystemBatch.from_atoms(atoms, dtype=torch.float64, device="cpu")
    with pytest.raises(ValueError, match=message):
        radius_graph(batch.positions, batch.cell, batch.pbc, batch.batch, 5.0)


def test_zero_cell_vector_on_a_non_periodic_axis_is_fine() -> None:
    atoms = Atoms("H2", positions=[[0, 0, 0], [0.5, 0.5, 1.0]], cell=[[3, 0, 0], [0, 3, 0], [0, 0, 0]], pbc=(1, 1, 0))
    assert our_pairs([atoms], 2.5, torch.float64)[0] == ase_pairs(atoms, 2.5)


def test_empty_and_single_atom() -> None:
    for atoms in (Atoms(), Atoms("H"), Atoms("H", cell=np.eye(3) * 10, pbc=True)):
        assert our_pairs([atoms], 3.0, torch.float64)[0] == set()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_cuda_matches_ase(dtype: torch.dtype) -> None:
    rng = np.random.default_rng(7)
    for kind in KINDS:
        cutoff = 4.0
        systems = [as_dtype(random_system(rng, kind), dtype) for _ in range(8)]
        batch = SystemBatch.from_atoms(systems, dtype=dtype, device="cuda")
        edge_index, shifts = radius_graph(batch.positions, batch.cell, batch.pbc, batch.batch, cutoff)
        cpu = SystemBatch.from_atoms(systems, dtype=dtype, device="cpu")
        ref_index, ref_shifts = radius_graph(cpu.positions, cpu.cell, cpu.pbc, cpu.batch, cutoff)
        got = {(*e, *s) for e, s in zip(edge_index.T.cpu().tolist(), shifts.cpu().tolist())}
        want = {(*e, *s) for e, s in zip(ref_index.T.tolist(), ref_shifts.tolist())}
        assert got == want
