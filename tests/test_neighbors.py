"""The radius graph against ASE's neighbour list, exactly, over a randomized battery."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
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


def assert_symmetric(pairs: set[tuple[int, int, int, int, int]], label: str = "") -> None:
    """Every edge ``(i, j, S)`` comes with its reverse ``(j, i, -S)``."""
    lonely = [p for p in pairs if (p[1], p[0], -p[2], -p[3], -p[4]) not in pairs]
    assert not lonely, f"{label}: {len(lonely)} edges without their reverse, e.g. {lonely[:3]}"


def exact_lengths(atoms: Atoms, pairs: list[tuple[int, int, int, int, int]]) -> np.ndarray:
    """|D| by radius_graph's stated rule, in numpy: D = (r_j - r_i) + ((S_0 a_0 + S_1 a_1) + S_2 a_2),
    |D| = sqrt((D_x^2 + D_y^2) + D_z^2), float64, one rounding per operation."""
    p = np.array(pairs, dtype=np.int64).reshape(-1, 5)
    pos, a, s = atoms.positions, atoms.cell.array, p[:, 2:].astype(np.float64)
    lattice = (s[:, 0:1] * a[0] + s[:, 1:2] * a[1]) + s[:, 2:3] * a[2]
    d = (pos[p[:, 1]] - pos[p[:, 0]]) + lattice
    return np.sqrt((d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1]) + d[:, 2] * d[:, 2])


def rule_pairs(atoms: Atoms, cutoff: float) -> set[tuple[int, int, int, int, int]]:
    """The pairs the stated rule keeps: ASE's candidates at a slightly larger cutoff, filtered by
    ``|D| < cutoff`` as :func:`exact_lengths` evaluates it."""
    candidates = sorted(ase_pairs(atoms, cutoff * (1 + 1e-9)))
    lengths = exact_lengths(atoms, candidates)
    return {p for p, d in zip(candidates, lengths) if d < cutoff}


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
            assert_symmetric(ours, f"{kind} pbc={atoms.pbc} cutoff={cutoff}")
            n_checked += 1
    assert n_checked == 48


@pytest.mark.parametrize("kind", ["bulk", "small", "tilted", "far"])
def test_pairs_at_exactly_the_cutoff_are_decided_by_one_symmetric_rule(kind: str) -> None:
    """The cutoff set to the float64 length of an existing pair (by the stated rule): that pair and
    its reverse are both dropped, every graph is symmetric and equals what the rule keeps, in batches
    and alone (the search sees these lengths with different rounding in the two directions)."""
    rng = np.random.default_rng(20 + KINDS.index(kind))
    for _ in range(12):
        systems = [random_system(rng, kind) for _ in range(4)]
        candidates = sorted(ase_pairs(systems[0], float(rng.uniform(1.5, 5.0))))
        if not candidates:
            continue
        tied = candidates[int(rng.integers(len(candidates)))]
        cutoff = float(exact_lengths(systems[0], [tied])[0])
        for ours in (our_pairs(systems, cutoff, torch.float64), [our_pairs(systems[:1], cutoff, torch.float64)[0]]):
            for atoms, graph in zip(systems, ours):
                assert_symmetric(graph, f"{kind} cutoff={cutoff!r}")
                assert graph == rule_pairs(atoms, cutoff), f"{kind} cutoff={cutoff!r}"
            assert tied not in ours[0]


def _edges(atoms: Atoms, cutoff: float) -> int:
    batch = SystemBatch.from_atoms(atoms, dtype=torch.float64, device="cpu")
    return radius_graph(batch.positions, batch.cell, batch.pbc, batch.batch, cutoff)[0].shape[1]


def test_the_cutoff_rule_holds_to_the_last_bit() -> None:
    """A pair is an edge iff |D| < cutoff with |D| = sqrt((Dx² + Dy²) + Dz²) correctly rounded: a
    cutoff one float64 step above a whole shell keeps it, one equal to |D| drops it (torch's CPU
    float64 sqrt is not correctly rounded and got both wrong)."""
    fcc = bulk("Cu", "fcc", a=3.6)
    d = fcc.cell.array[0]
    shell = float(np.sqrt((d[0] * d[0] + d[1] * d[1]) + d[2] * d[2]))
    assert _edges(fcc, shell) == 0 and _edges(fcc, float(np.nextafter(shell, 9.0))) == 12
    rng = np.random.default_rng(7)
    for _ in range(300):
        pair = Atoms("H2", positions=rng.uniform(-5, 5, (2, 3)))
        d = pair.positions[1] - pair.positions[0]
        length = float(np.sqrt((d[0] * d[0] + d[1] * d[1]) + d[2] * d[2]))
        assert _edges(pair, length) == 0, pair.positions.tolist()
        assert _edges(pair, float(np.nextafter(length, 99.0))) == 2, pair.positions.tolist()


def test_lattice_shells_at_the_cutoff_are_symmetric() -> None:
    """Crystals whose neighbour shells sit exactly at the cutoff, also in cells smaller than the
    cutoff: the rule decides each pair, and each pair's reverse gets the same decision; where every
    length is exact in float64 (simple cubic, a = 2), that is ASE's graph too."""
    sc = np.eye(3) * 2.0
    cases = {
        "sc, the 6 nearest images at the cutoff": (Atoms("H", cell=sc, pbc=True), 2.0),
        "sc, cell smaller than the cutoff": (Atoms("H", cell=sc, pbc=True), 4.0),
        "sc, off the origin": (Atoms("H", positions=[[0.3, 0.7, 1.1]], cell=sc, pbc=True), 4.0),
        "square slab": (Atoms("H2", positions=[[0, 0, 0], [1.0, 0, 0]], cell=sc, pbc=(True, True, False)), 3.0),
        "fcc, nearest shell": (bulk("Cu", "fcc", a=3.6, cubic=True), 3.6 / np.sqrt(2)),
        "fcc primitive, second shell": (bulk("Cu", "fcc", a=3.6), 3.6),
        "fcc, third shell": (bulk("Cu", "fcc", a=3.6).repeat((2, 1, 1)), 3.6 * np.sqrt(1.5)),
        "hcp, in-plane shell": (bulk("Cu", "hcp", a=2.55, c=4.16), 2.55),
    }
    for label, (atoms, cutoff) in cases.items():
        ours = our_pairs([atoms], cutoff, torch.float64)[0]
        assert_symmetric(ours, label)
        assert ours == rule_pairs(atoms, cutoff), label
        if np.array_equal(atoms.cell.array, sc):
            assert ours == ase_pairs(atoms, cutoff), label


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


def test_pairs_dropped_at_the_cutoff_leave_a_consistent_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    """fcc (a = 4 Å: every length exact in float64) with its second shell (6 neighbours at a) exactly
    at the cutoff a, next to random systems and a cubic cell whose images lie at the cutoff up to
    rounding, finished in blocks of 7 pairs: the pairs the exact rule drops are removed from every output
    (pairs, shifts, and the lengths the caps sort by), so each atom keeps its 12 nearest, capped or not."""
    from equicalc import neighbors

    monkeypatch.setattr(neighbors, "_PAIR_BLOCK", 7)
    rng = np.random.default_rng(8)
    crystal = bulk("Cu", "fcc", a=4.0, cubic=True).repeat((2, 2, 2))
    offset = Atoms("H", positions=[[0.3, 0.7, 1.1]], cell=np.eye(3) * 2.0, pbc=True)  # its images: ties by rounding
    systems = [random_system(rng, "small"), crystal, random_system(rng, "far"), offset]
    graphs = our_pairs(systems, 4.0, torch.float64)
    assert graphs[1] == ase_pairs(crystal, 4.0) and len(graphs[1]) == 12 * len(crystal)
    for atoms, graph in zip(systems, graphs):
        assert_symmetric(graph)
        assert graph == rule_pairs(atoms, 4.0)
    for strict in (True, False):
        capped = our_pairs(systems, 4.0, torch.float64, max_neighbors=12, strict=strict)[1]
        assert capped == graphs[1], f"strict={strict}"
        capped = our_pairs(systems, 4.0, torch.float64, max_neighbors=5, strict=strict)[1]
        assert len(capped) == (5 if strict else 12) * len(crystal), f"strict={strict}"


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


def test_strict_nearest_k_cap_is_deterministic_and_nearest() -> None:
    """The k nearest per centre; distance ties broken by neighbour index, then shift."""
    atoms = bulk("Cu", "fcc", a=3.6).repeat((2, 2, 2))  # 12 nearest neighbours, all tied
    batch = SystemBatch.from_atoms(atoms, dtype=torch.float64, device="cpu")
    cap = dict(max_neighbors=5, strict=True)
    edge_index, shifts = radius_graph(batch.positions, batch.cell, batch.pbc, batch.batch, 6.0, **cap)
    assert torch.bincount(edge_index[0]).tolist() == [5] * len(atoms)
    i, j, d, S = neighbor_list("ijdS", atoms, 6.0)
    for centre in range(len(atoms)):
        mine = edge_index[0] == centre
        ours = sorted(zip(edge_index[1][mine].tolist(), *shifts[mine].T.tolist()))
        nearest = (i == centre) & np.isclose(d, d[i == centre].min())
        tied = sorted(zip(j[nearest].tolist(), *S[nearest].T.tolist()))
        assert len(tied) == 12 and ours == tied[:5]
    again, _ = radius_graph(batch.positions, batch.cell, batch.pbc, batch.batch, 6.0, **cap)
    assert torch.equal(again, edge_index)


def test_strict_nearest_k_cap_matches_sorted_distances() -> None:
    rng = np.random.default_rng(3)
    atoms = random_system(rng, "bulk", pbc=(True, True, False), n_atoms=20)
    batch = SystemBatch.from_atoms(atoms, dtype=torch.float64, device="cpu")
    cap = dict(max_neighbors=7, strict=True)
    edge_index, shifts = radius_graph(batch.positions, batch.cell, batch.pbc, batch.batch, 5.0, **cap)
    i, d = neighbor_list("id", atoms, 5.0)
    vectors = batch.positions[edge_index[1]] - batch.positions[edge_index[0]] + shifts.double() @ batch.cell[0]
    lengths = vectors.norm(dim=1).numpy()
    for centre in range(len(atoms)):
        expected = np.sort(d[i == centre])[:7]
        assert np.allclose(np.sort(lengths[edge_index[0].numpy() == centre]), expected, rtol=0, atol=1e-12)


def test_default_nearest_k_cap_keeps_whole_shells() -> None:
    """fcc (shells of 12, 6, 24, 12, 24 within 6 Å): the default cap keeps every neighbour tied with
    the k-th nearest, so each atom keeps whole shells, the same ones as every other atom."""
    atoms = bulk("Cu", "fcc", a=3.6).repeat((2, 2, 2))
    batch = SystemBatch.from_atoms(atoms, dtype=torch.float64, device="cpu")
    for k, kept in [(1, 12), (5, 12), (12, 12), (13, 18), (19, 42), (42, 42), (43, 54), (78, 78), (100, 78)]:
        edge_index, shifts = radius_graph(batch.positions, batch.cell, batch.pbc, batch.batch, 6.0, max_neighbors=k)
        assert torch.bincount(edge_index[0]).tolist() == [kept] * len(atoms), f"max_neighbors={k}"
        assert_symmetric({(*e, *s) for e, s in zip(edge_index.T.tolist(), shifts.tolist())}, f"max_neighbors={k}")


@pytest.mark.parametrize("k", [1, 3, 7, 30])
def test_default_nearest_k_cap_matches_sorted_distances(k: int) -> None:
    """Random systems, batched: each atom with more than k neighbours keeps those whose squared
    distance is within 0.01 Å² of its k-th nearest's (fairchem's degeneracy tolerance), the others
    keep all."""
    rng = np.random.default_rng(5)
    systems = [random_system(rng, kind, n_atoms=20) for kind in ("bulk", "small", "far")]
    expected = []
    for atoms in systems:
        i, j, d, S = neighbor_list("ijdS", atoms, 5.0)
        keep = np.zeros(len(i), dtype=bool)
        for centre in range(len(atoms)):
            mine = i == centre
            limit = np.sort(d[mine])[k - 1] ** 2 + 0.01 if mine.sum() > k else np.inf
            keep |= mine & (d**2 <= limit)
        expected.append({(a, b, *c) for a, b, c in zip(i[keep].tolist(), j[keep].tolist(), S[keep].tolist())})
    assert our_pairs(systems, 5.0, torch.float64, max_neighbors=k) == expected


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


@pytest.mark.parametrize(
    ("atoms", "message"),
    [
        (Atoms("H2", positions=[[0, 0, 0], [np.nan, 0, 0]]), r"positions contain NaN or infinite values \(atoms \["),
        (Atoms("H", cell=[[1, 0, 0], [0, 1, 0], [0, 0, np.inf]], pbc=False), "cell contains NaN"),
        (Atoms("H", cell=[[3, 0, 0], [0, 3, 0], [0, 0, 0]], pbc=True), "axis 2 has a zero-length cell vector"),
        (Atoms("H", cell=[[3, 0, 0], [6, 0, 0], [0, 0, 3]], pbc=True), "degenerate"),
        (Atoms("H", cell=[[3, 0, 0], [6, 0, 0], [0, 0, 3]], pbc=(True, True, False)), "degenerate"),
    ],
)
def test_check_geometry_refuses_what_radius_graph_refuses(atoms: Atoms, message: str) -> None:
    """The geometry checks stand alone (no cutoff, no graph), batched and for one cell ``(3, 3)``,
    with radius_graph's errors; good geometry passes."""
    from equicalc.neighbors import check_geometry

    good = Atoms("H", cell=np.eye(3) * 3, pbc=True)
    batch = SystemBatch.from_atoms([good, atoms], dtype=torch.float64, device="cpu")
    with pytest.raises(ValueError, match=message):
        check_geometry(batch.positions, batch.cell, batch.pbc)
    one = SystemBatch.from_atoms(atoms, dtype=torch.float64, device="cpu")
    with pytest.raises(ValueError, match=message):
        check_geometry(one.positions, one.cell[0], one.pbc[0])
    check_geometry(batch.positions[:1], batch.cell[:1], batch.pbc[:1])


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
