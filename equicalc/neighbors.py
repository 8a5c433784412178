"""Batched radius graphs with per-axis periodic boundary conditions.

Method: wrap every atom into its cell along the periodic axes, replicate the atoms into the
periodic images that can lie within the cutoff of the cell (their number per axis follows from
the cell's perpendicular widths), and find all image-atom pairs closer than the cutoff with
torch-cluster's radius search (a KD-tree of the atoms, queried with every image). Each pair is
mapped back to ``(i, j, S)`` with the integer shift ``S`` that applies to the *unwrapped*
positions, as ASE's ``neighbor_list`` does. The search runs
without gradients in float64; differentiable edge vectors are formed afterwards by
:class:`potentials.AtomGraph`.

Pairs at the cutoff: the lengths the search sees carry rounding errors of the wrapping and of the
image positions, which differ between a pair and its reverse, so the search alone could keep one
direction of a pair lying exactly at the cutoff and drop the other. The search therefore runs with a
radius larger by a band of ``_BAND`` times the geometry's length scale (about 1e-12 of it, hundreds
of times the rounding error), and every pair whose searched length lies within that band of the
cutoff is decided again by the exact rule of :func:`radius_graph`, which gives a pair and its
reverse the same length bit for bit.

Non-periodic axes never wrap and get no images, whatever the cell says, so molecules may carry no
cell at all; slabs may have a zero or arbitrary third vector.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import mmap
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor
from torch_cluster import radius

from potentials.base import check_number

T = TypeVar("T")

#: distances within this many Å of each other tie for the strict nearest-k cap [Å]
TIE_TOLERANCE = 1e-6
#: the non-strict nearest-k cap keeps every neighbour whose squared distance exceeds the k-th
#: nearest's by at most this [Å²] (fairchem's ``degeneracy_tolerance``, which also acts on squared distances)
DEGENERACY_TOLERANCE = 0.01
#: half-width of the band around the cutoff, in units of the geometry's length scale, whose pairs the
#: exact rule re-decides (2**-40, about 1e-12: float64 rounding of the search is a few 1e-16 of it)
_BAND = 2.0**-40
#: pairs post-processed at once: cache-sized blocks (the chunks of pairs are finished in parallel)
_PAIR_BLOCK = 2**16
#: refuse systems that would need more atom images than this (a near-zero cell vector)
MAX_IMAGES = 50_000_000
#: CPU outputs of at least this many bytes are mapped with transparent huge pages (see :func:`_output`)
_HUGE_OUTPUT = 2**25


def radius_graph(
    positions: Tensor,
    cell: Tensor,
    pbc: Tensor,
    batch: Tensor,
    cutoff: float,
    *,
    max_neighbors: int | None = None,
    strict: bool = False,
) -> tuple[Tensor, Tensor]:
    """All pairs ``(i, j, S)`` with ``|r_j - r_i + S @ cell| < cutoff``, excluding ``i == j, S == 0``.

    The rule for a pair at the cutoff, one rule for every pair (ASE's): ``(i, j, S)`` is an edge if
    and only if ``|D| < cutoff`` strictly, with ``D`` and ``|D|`` evaluated in float64 from the
    positions and cell as given (unwrapped), one rounding per operation, in this order:
    ``D = (r_j - r_i) + ((S_0 a_0 + S_1 a_1) + S_2 a_2)`` and
    ``|D| = sqrt((D_x² + D_y²) + D_z²)``. Swapping ``(i, j, S)`` for ``(j, i, -S)`` negates every
    rounded intermediate exactly, so both directions get the same length bit for bit and the same
    decision: without a cap the graph is symmetric, each ``(i, j, S)`` with its ``(j, i, -S)``, also
    for pairs at exactly the cutoff and in cells smaller than the cutoff.

    Args:
        positions: ``(n_atoms, 3)`` [Å], any float dtype, CPU or CUDA.
        cell: ``(n_systems, 3, 3)`` lattice vectors as rows [Å].
        pbc: ``(n_systems, 3)`` periodicity per axis.
        batch: ``(n_atoms,)`` system index of each atom, sorted.
        cutoff: radius [Å].
        max_neighbors: keep only about this many nearest neighbours of each atom (see ``strict``);
            a capped graph is no longer symmetric.
        strict: with ``max_neighbors``, keep exactly that many (fairchem's
            ``enforce_max_neighbors_strictly``, which parity with its checkpoints needs): distances
            equal to within ``TIE_TOLERANCE`` (1e-6 Å) tie, and ties go to the lower neighbour
            index, then the lexicographically smaller shift, so a shell of equidistant neighbours may
            be cut and symmetry-equivalent atoms get different graphs. When False (the default, as
            ``PotentialConfig.enforce_max_neighbors_strictly``), an atom with more than
            ``max_neighbors`` neighbours keeps every neighbour whose squared distance is at most the
            ``max_neighbors``-th nearest's plus ``DEGENERACY_TOLERANCE`` (0.01 Å², fairchem's
            ``degeneracy_tolerance``; fairchem measures it from the next, ``max_neighbors + 1``-th,
            nearest): shells are kept whole.

    Returns:
        ``edge_index`` ``(2, n_edges)`` (centre i, neighbour j) and ``shifts`` ``(n_edges, 3)``,
        both int64, grouped by ascending centre.

    Raises:
        ValueError: a cutoff not positive and finite, a ``max_neighbors`` not None or an integer
            >= 1 (a huge one means no cap), non-finite positions or cell, a zero-length or degenerate periodic cell
            vector (see :func:`check_geometry`), or a cell so small that the images cannot be
            enumerated.
    """
    cutoff = check_number(cutoff, "cutoff", float, minimum=0, inclusive=False, unit="Å")
    if max_neighbors is not None:
        # a cap beyond any count of edges has no effect: clamped to stay within int64 arithmetic
        max_neighbors = min(check_number(max_neighbors, "max_neighbors (or None)", int, minimum=1), 2**62)
    device = positions.device
    if positions.shape[0] == 0:
        empty = torch.zeros((2, 0), dtype=torch.long, device=device)
        return empty, empty.new_zeros((0, 3))
    check_geometry(positions, cell, pbc)
    with torch.no_grad():
        pos = positions.detach().to(torch.float64)
        # cell arithmetic is a few 3x3 matrices per system: done on the host, where it costs microseconds
        host_cell = cell.detach().cpu().to(torch.float64).numpy()
        host_pbc = pbc.detach().cpu().numpy().astype(bool)
        inverse = _inverse_basis(host_cell, host_pbc)
        reciprocal = np.linalg.norm(inverse, axis=1) * host_pbc  # 1 / the perpendicular widths [1/Å]

        # the geometry's length scale, which bounds the rounding errors of every length below: the
        # positions, the wrapping, the periodic cell and how far its images reach beyond it
        row_lengths = np.linalg.norm(host_cell, axis=2) * host_pbc
        reach = (row_lengths * reciprocal).sum(axis=1).max()
        scale = 2 * float(pos.abs().max()) + 3 * row_lengths.sum(axis=1).max() + cutoff * (2 * reach + 1)
        band = _BAND * scale
        radius = cutoff + band  # searched; pairs found within the band of the cutoff are decided exactly
        margin = radius * reciprocal
        n_images = np.ceil(margin).astype(np.int64)

        batch = batch.to(device)
        single = len(host_cell) == 1  # one system: no per-atom or per-image system lookups
        system = slice(None) if single else batch.cpu().numpy()  # per-system rows: broadcast or gathered
        cell = torch.from_numpy(host_cell).to(device)
        frac = _transform(pos, torch.from_numpy(inverse).to(device), batch)
        # whole cells each atom sits away from its home cell
        wrap = torch.floor(frac) * torch.from_numpy(host_pbc[system]).to(device)
        wrapped = pos - _transform(wrap, cell, batch)

        atom, shift = _images((frac - wrap).cpu().numpy(), margin[system], n_images[system])
        image_atom, image_shift = torch.from_numpy(atom).to(device), torch.from_numpy(shift).to(device)
        image_batch = None if single else batch.index_select(0, image_atom)
        image_pos = wrapped.index_select(0, image_atom) + _transform(image_shift.double(), cell, image_batch)
        # the KD-tree holds the atoms (fewer points to build it from) and every image is a query: image
        # q of atom j finding atom i is the edge (centre j, neighbour i), and the images come sorted by
        # atom, so the pairs come grouped by ascending centre
        chunks = _search(wrapped, None if single else batch, image_pos, image_batch, radius)

        # drop each atom's pair with itself from its home image (i == j, S == 0): one per home image,
        # so the size and place of every chunk's output are known before its pairs are read, and the
        # chunks are finished in parallel, in cache-sized blocks, straight into the output
        home = (image_shift == 0).all(dim=1)
        self_atom = torch.where(home, image_atom, -1)
        sizes = [row.numel() - int(home[lo:hi].sum()) for lo, hi, row, _ in chunks]
        offsets = list(itertools.accumulate(sizes, initial=0))
        edge_index = _output((2, offsets[-1]), torch.long, device)
        # S applies to the unwrapped positions: D = (r_i - w_i cell) - (r_j - w_j cell + s cell)
        wrap = wrap.long()
        shifts = _output((offsets[-1], 3), torch.long, device)
        shift_table, moved = wrap.index_select(0, image_atom) - image_shift, bool(wrap.any())  # w_j - s, per image
        lengths = None if max_neighbors is None else pos.new_empty(offsets[-1])
        block = _PAIR_BLOCK if device.type == "cpu" else max([1] + [row.numel() for _, _, row, _ in chunks])
        inner = max(cutoff - band, 0.0) ** 2  # squared searched lengths below this are edges for certain
        wrapped_by_axis, image_by_axis = wrapped.T.contiguous(), image_pos.T.contiguous()

        def finish(k: int) -> list[Tensor]:
            """Writes chunk k's pairs into the output; returns the output places of those that the
            exact rule drops."""
            _, _, rows, cols = chunks[k]
            out, dropped = offsets[k], []
            for start in range(0, rows.numel(), block):
                row, col = rows[start : start + block], cols[start : start + block]
                keep = _flat_nonzero(col != self_atom.index_select(0, row))
                done = slice(out, out + keep.numel())
                image = row.index_select(0, keep)  # the image each pair was found from
                torch.index_select(col, 0, keep, out=edge_index[1, done])
                torch.index_select(image_atom, 0, image, out=edge_index[0, done])
                torch.index_select(shift_table, 0, image, out=shifts[done])
                if moved:
                    shifts[done] -= wrap.index_select(0, edge_index[1, done])
                squared = _squared_distances(wrapped_by_axis, edge_index[1, done], image_by_axis, image)
                if lengths is not None:
                    torch.sqrt(squared, out=lengths[done])
                if squared.numel() and float(squared.max()) >= inner:  # some pairs in the band of the cutoff
                    near = _flat_nonzero(squared >= inner).to(device).add_(out)
                    exact = _exact_lengths(pos, cell, None if single else batch, edge_index[:, near], shifts[near])
                    dropped.append(near[~(exact < cutoff)])
                out = done.stop
            return dropped

        dropped = [part for parts in _in_parallel(finish, len(chunks)) for part in parts if part.numel()]
        if dropped:  # pairs in the band at or beyond the cutoff: rare, so the output is compacted afterwards
            kept = torch.ones(offsets[-1], dtype=torch.bool, device=device)
            kept[torch.cat(dropped)] = False
            kept = _flat_nonzero(kept).to(device)
            edge_index, shifts = edge_index.index_select(1, kept), shifts.index_select(0, kept)
            lengths = None if lengths is None else lengths.index_select(0, kept)
        if max_neighbors is not None:
            if strict:
                nearest = _nearest(edge_index[0], edge_index[1], shifts, lengths, max_neighbors)
            else:
                nearest = _nearest_shells(edge_index[0], lengths, max_neighbors, positions.shape[0])
            edge_index, shifts = edge_index[:, nearest], shifts[nearest]
        return edge_index, shifts


def check_geometry(positions: Tensor, cell: Tensor, pbc: Tensor) -> None:
    """Refuses geometry that no radius graph (and no energy) can be computed for.

    Args:
        positions: ``(n_atoms, 3)`` [Å], any float dtype, CPU or CUDA.
        cell: ``(n_systems, 3, 3)`` (or ``(3, 3)``) lattice vectors as rows [Å].
        pbc: ``(n_systems, 3)`` (or ``(3,)``) periodicity per axis.

    Raises:
        ValueError: NaN or infinite positions (naming up to five atoms) or cell entries (on any axis,
            periodic or not), a zero-length periodic cell vector (shorter than 1e-10 of the cell's
            longest), or degenerate periodic vectors (collinear or coplanar, to 1e-8 relative).
    """
    finite = torch.isfinite(positions.detach()).all(dim=1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).flatten()[:5].tolist()
        raise ValueError(f"positions contain NaN or infinite values (atoms {bad})")
    host_cell = cell.detach().cpu().to(torch.float64).numpy().reshape(-1, 3, 3)
    host_pbc = pbc.detach().cpu().numpy().astype(bool).reshape(-1, 3)
    if not np.isfinite(host_cell).all():
        raise ValueError("cell contains NaN or infinite values")
    lengths = np.linalg.norm(host_cell, axis=2)
    scale = np.maximum(lengths.max(axis=1), 1e-300)
    zero = host_pbc & ((lengths <= 1e-10 * scale[:, None]) | (lengths == 0))
    if zero.any():
        system, axis = np.argwhere(zero)[0]
        raise ValueError(f"system {system}: periodic axis {axis} has a zero-length cell vector")
    # the periodic vectors (others zeroed) are degenerate when their k-th singular value vanishes
    k = host_pbc.sum(axis=1)
    singular = np.linalg.svd(host_cell * host_pbc[:, :, None], compute_uv=False)
    degenerate = (k > 0) & (singular[np.arange(len(k)), np.maximum(k - 1, 0)] <= 1e-8 * singular[:, 0])
    if degenerate.any():
        system = int(np.argmax(degenerate))
        raise ValueError(
            f"system {system}: the periodic cell vectors {np.flatnonzero(host_pbc[system]).tolist()} "
            "are degenerate (collinear or coplanar: zero volume)"
        )


def _squared_distances(x: Tensor, i: Tensor, y: Tensor, j: Tensor) -> Tensor:
    """``|x_i - y_j|²`` ``(n,)`` [Å²] of points stored by axis, ``x`` and ``y`` ``(3, n_points)``, for
    index pairs ``i``, ``j`` ``(n,)``: gathering one coordinate at a time is several times faster than
    gathering rows of three and reducing over them. Rounded as it comes (fused multiply-adds
    included): it only sorts pairs into those inside the band of the cutoff and the rest."""
    difference = x[0].index_select(0, i).sub_(y[0].index_select(0, j))
    squared = difference.square()
    for axis in (1, 2):
        torch.index_select(x[axis], 0, i, out=difference).sub_(y[axis].index_select(0, j))
        squared.addcmul_(difference, difference)
    return squared


def _exact_lengths(pos: Tensor, cell: Tensor, batch: Tensor | None, edge_index: Tensor, shifts: Tensor) -> Tensor:
    """``|D|`` ``(n,)`` [Å] of the edges ``(2, n)`` with shifts ``(n, 3)`` by the rule of :func:`radius_graph`, exactly antisymmetric:
    ``D = (r_j - r_i) + ((S_0 a_0 + S_1 a_1) + S_2 a_2)`` in float64, one rounding per elementwise
    operation (no fused multiply-add, no matrix product whose summation order could vary, a
    correctly rounded square root), so
    ``(j, i, -S)`` gives ``-D`` and the same length bit for bit. ``batch`` is None for one system."""
    i, j = edge_index
    a = cell[0] if batch is None else cell.index_select(0, batch.index_select(0, i))  # (3, 3) or (n, 3, 3)
    s = shifts.to(torch.float64)
    lattice = s[:, 0:1] * a[..., 0, :] + s[:, 1:2] * a[..., 1, :]
    lattice = lattice + s[:, 2:3] * a[..., 2, :]
    d = (pos.index_select(0, j) - pos.index_select(0, i)) + lattice
    squared = d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1]
    squared = squared + d[:, 2] * d[:, 2]
    if squared.device.type == "cpu":  # torch's float64 sqrt on the CPU (MKL) is not correctly rounded; numpy's is
        return torch.from_numpy(np.sqrt(squared.numpy()))
    return torch.sqrt(squared)  # CUDA's float64 sqrt is IEEE, correctly rounded


def _output(shape: tuple[int, int], dtype: torch.dtype, device: torch.device) -> Tensor:
    """An uninitialised output tensor.

    Large CPU outputs are fresh memory on every call (the C allocator maps blocks of more than 32 MB
    anew each time), and the kernel maps fresh memory in 4 kB pages, a fault each, at a cost that grows
    faster than the graph. Where the OS offers transparent huge pages (Linux), large outputs are mapped
    with them: 2 MB per fault, twice as fast to fill.
    """
    size = math.prod(shape) * dtype.itemsize
    if device.type != "cpu" or size < _HUGE_OUTPUT or not hasattr(mmap, "MADV_HUGEPAGE"):
        return torch.empty(shape, dtype=dtype, device=device)
    memory = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    with contextlib.suppress(OSError):  # a kernel built without them: ordinary pages
        memory.madvise(mmap.MADV_HUGEPAGE)
    return torch.frombuffer(memory, dtype=dtype).view(shape)


def _transform(vectors: Tensor, matrices: Tensor, system: Tensor | None) -> Tensor:
    """Row vectors ``(n, 3)`` times their systems' matrices: ``vectors[k] @ matrices[system[k]]``
    (``system`` may be None when there is one matrix)."""
    if matrices.shape[0] == 1:
        return vectors @ matrices[0]
    return torch.bmm(vectors[:, None], matrices.index_select(0, system))[:, 0]


def _inverse_basis(cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """The inverse ``(S, 3, 3)`` of each system's basis made of the cell rows on periodic axes and of
    orthonormal vectors normal to them on the others (checked by :func:`check_geometry`): its
    columns are reciprocal vectors g_a with |g_a| = 1 / width_a on periodic axes."""
    basis = np.where(pbc.all(axis=1)[:, None, None], cell, np.eye(3))
    for system in np.flatnonzero(pbc.any(axis=1) & ~pbc.all(axis=1)):
        periodic = pbc[system]
        # Householder QR of [periodic vectors, e_x, e_y, e_z]: q[:, :k] spans the periodic vectors
        q, _ = np.linalg.qr(np.concatenate([cell[system][periodic], np.eye(3)]).T)
        basis[system][periodic] = cell[system][periodic]
        basis[system][~periodic] = q[:, periodic.sum() :].T
    return np.linalg.inv(basis)


def _images(frac: np.ndarray, margin: np.ndarray, bound: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Atom index and integer shift of every periodic image that can lie within the cutoff of its cell.

    Per atom ``(n, 3)``: ``frac`` its wrapped fractional coordinates, ``margin`` the cutoff over its
    cell's widths, ``bound`` the largest shift its cell allows on each axis (0 on open axes). On each
    axis the shifts s with frac + s in [-margin, 1 + margin] form a range [lo, hi] holding 0; an atom's
    images are the product of its three ranges, enumerated last axis fastest, so the images come
    sorted by atom. Host bookkeeping in numpy: a few dozen operations on small arrays.
    """
    tol = margin + 1e-9
    lo = np.minimum(np.maximum(np.ceil(-tol - frac), -bound), 0).astype(np.int64)
    hi = np.maximum(np.minimum(np.floor(1 + tol - frac), bound), 0).astype(np.int64)
    count = hi - lo + 1
    n_images = np.prod(count, axis=1, dtype=np.float64).sum()  # in floats: no overflow for absurd cells
    if n_images > MAX_IMAGES:
        raise ValueError(f"a periodic cell is too small for the cutoff: {n_images:.3g} atom images would be needed")
    per_atom = count[:, 0] * count[:, 1] * count[:, 2]
    atom = np.repeat(np.arange(len(frac)), per_atom)
    rank = np.arange(len(atom)) - np.repeat(np.cumsum(per_atom) - per_atom, per_atom)  # rank among its images
    count, shift = np.take(count, atom, axis=0), np.take(lo, atom, axis=0)
    for axis in (2, 1):  # the digits of rank in the mixed radix (count_0, count_1, count_2)
        rank, digit = np.divmod(rank, count[:, axis])
        shift[:, axis] += digit
    shift[:, 0] += rank
    return atom, shift


def _flat_nonzero(mask: Tensor) -> Tensor:
    """Indices of the true entries of a 1-D boolean mask (numpy's on a CPU, ten times faster there than torch's)."""
    if mask.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(mask.numpy()))
    return torch.nonzero(mask).flatten()


def _search(
    x: Tensor, batch_x: Tensor | None, y: Tensor, batch_y: Tensor | None, r: float
) -> list[tuple[int, int, Tensor, Tensor]]:
    """Every pair closer than ``r`` (strictly, as ASE), none dropped, as consecutive chunks of rows
    ``(lo, hi, row into y, col into x)``, the rows of a chunk lying in [lo, hi). The batches are
    None for a single system."""
    n_systems = 1 if batch_y is None else int(batch_y.max()) + 1
    if x.device.type == "cpu":  # the KD-tree collects every match; a cap of len(x) never truncates
        n_chunks = min(torch.get_num_threads(), max(1, y.shape[0] // 256))
        bounds = [y.shape[0] * k // n_chunks for k in range(n_chunks + 1)]

        def chunk(k: int) -> tuple[int, int, Tensor, Tensor]:
            lo, hi = bounds[k], bounds[k + 1]
            part = None if batch_y is None else batch_y[lo:hi]
            row, col = radius(x, y[lo:hi], r, batch_x, part, max_num_neighbors=x.shape[0], batch_size=n_systems)
            return lo, hi, row.add_(lo), col

        return _in_parallel(chunk, n_chunks)  # torch-cluster releases the GIL
    cap = 64
    while True:  # the CUDA kernel pre-allocates `cap` slots per centre: grow until none is full
        row, col = radius(x, y, r, batch_x, batch_y, max_num_neighbors=cap, batch_size=n_systems)
        if row.numel() == 0 or torch.bincount(row).max() < cap:
            return [(0, y.shape[0], row, col)]
        cap *= 2


def _in_parallel(fn: Callable[[int], T], n: int) -> list[T]:
    """``[fn(0), ..., fn(n - 1)]``, run on the worker threads and this one, the workers under this
    thread's inference mode (it is per thread, and tensors made under it can only be written under it)."""
    inference = torch.is_inference_mode_enabled()

    def work(k: int) -> T:
        with torch.inference_mode(inference):
            return fn(k)

    others = [_thread_pool().submit(work, k) for k in range(1, n)]
    return [fn(0)] + [f.result() for f in others]


@functools.cache
def _thread_pool() -> ThreadPoolExecutor:
    """Worker threads for KD-tree queries, kept for the life of the process (starting threads on
    every call costs more than a small graph)."""
    return ThreadPoolExecutor(max(1, torch.get_num_threads() - 1), thread_name_prefix="equicalc-neighbors")


# a forked child inherits the pool object but not its threads: it must start its own
os.register_at_fork(after_in_child=_thread_pool.cache_clear)


def _nearest(centre: Tensor, neighbour: Tensor, shifts: Tensor, lengths: Tensor, k: int) -> Tensor:
    """Indices of exactly the k nearest edges of each centre (or all it has), with a deterministic
    tie-break (the strict cap of :func:`radius_graph`)."""
    order = torch.arange(centre.numel(), device=centre.device)
    quantized = torch.round(lengths / TIE_TOLERANCE).long()  # distances this close count as tied
    for key in (shifts[:, 2], shifts[:, 1], shifts[:, 0], neighbour, quantized, centre):  # least significant first
        order = order[torch.argsort(key[order], stable=True)]
    sorted_centre = centre[order]
    first = torch.searchsorted(sorted_centre, sorted_centre, side="left")
    rank = torch.arange(order.numel(), device=order.device) - first
    return torch.sort(order[rank < k]).values


def _nearest_shells(centre: Tensor, lengths: Tensor, k: int, n_atoms: int) -> Tensor:
    """Indices (ascending) of the edges of each centre whose squared length is at most the k-th
    smallest's plus ``DEGENERACY_TOLERANCE`` (all of them for a centre with at most k edges): the
    non-strict cap of :func:`radius_graph`, which keeps tied neighbours together.

    ``centre`` ``(n_edges,)`` the centre atom of each edge, ``lengths`` ``(n_edges,)`` [Å].
    """
    by_length = torch.argsort(lengths)
    order = by_length[torch.argsort(centre.index_select(0, by_length), stable=True)]  # by centre, then length
    count = torch.bincount(centre, minlength=n_atoms)
    first = torch.cumsum(count, dim=0) - count
    capped = torch.nonzero(count > k).flatten()
    limit = torch.full((n_atoms,), math.inf, dtype=lengths.dtype, device=lengths.device)
    kth = lengths.index_select(0, order.index_select(0, first.index_select(0, capped) + (k - 1)))
    limit[capped] = kth.square() + DEGENERACY_TOLERANCE
    return _flat_nonzero(lengths.square() <= limit.index_select(0, centre)).to(centre.device)
