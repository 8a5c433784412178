"""Batched radius graphs with per-axis periodic boundary conditions.

Method: wrap every atom into its cell along the periodic axes, replicate the atoms into the
periodic images that can lie within the cutoff of the cell (their number per axis follows from
the cell's perpendicular widths), and find all image-atom pairs closer than the cutoff with
torch-cluster's radius search (a KD-tree of the atoms, queried with every image). Each pair is
mapped back to ``(i, j, S)`` with the integer shift ``S`` that applies to the *unwrapped*
positions, as ASE's ``neighbor_list`` does. The search runs
without gradients in float64; differentiable edge vectors are formed afterwards by
:class:`potentials.AtomGraph`.

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

T = TypeVar("T")

#: distances within this many Å of each other tie for the nearest-k cap [Å]
TIE_TOLERANCE = 1e-6
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
) -> tuple[Tensor, Tensor]:
    """All pairs ``(i, j, S)`` with ``|r_j - r_i + S @ cell| < cutoff``, excluding ``i == j, S == 0``.

    Args:
        positions: ``(n_atoms, 3)`` [Å], any float dtype, CPU or CUDA.
        cell: ``(n_systems, 3, 3)`` lattice vectors as rows [Å].
        pbc: ``(n_systems, 3)`` periodicity per axis.
        batch: ``(n_atoms,)`` system index of each atom, sorted.
        cutoff: radius [Å].
        max_neighbors: keep only the this-many nearest neighbours of each atom; distances equal to
            within ``TIE_TOLERANCE`` tie, and ties go to the lower neighbour index, then the
            lexicographically smaller shift.

    Returns:
        ``edge_index`` ``(2, n_edges)`` (centre i, neighbour j) and ``shifts`` ``(n_edges, 3)``,
        both int64, grouped by ascending centre.

    Raises:
        ValueError: non-finite positions or cell, a zero-length or degenerate periodic cell
            vector, or a cell so small that the images cannot be enumerated.
    """
    device = positions.device
    if positions.shape[0] == 0:
        empty = torch.zeros((2, 0), dtype=torch.long, device=device)
        return empty, empty.new_zeros((0, 3))
    if not cutoff > 0:
        raise ValueError(f"cutoff must be positive, got {cutoff}")
    with torch.no_grad():
        pos = positions.detach().to(torch.float64)
        if not torch.isfinite(pos).all():
            bad = torch.nonzero(~torch.isfinite(pos).all(dim=1)).flatten()[:5].tolist()
            raise ValueError(f"positions contain NaN or infinite values (atoms {bad})")
        # cell arithmetic is a few 3x3 matrices per system: done on the host, where it costs microseconds
        host_cell = cell.detach().cpu().to(torch.float64).numpy()
        host_pbc = pbc.detach().cpu().numpy().astype(bool)
        inverse, margin = _cell_geometry(host_cell, host_pbc, cutoff)
        n_images = np.ceil(margin).astype(np.int64) * host_pbc

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
        chunks = _search(wrapped, None if single else batch, image_pos, image_batch, cutoff)

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
        block = _PAIR_BLOCK if device.type == "cpu" else max(1, offsets[-1])

        def finish(k: int) -> None:
            _, _, rows, cols = chunks[k]
            out = offsets[k]
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
                if lengths is not None:
                    vectors = wrapped.index_select(0, edge_index[1, done]) - image_pos.index_select(0, image)
                    torch.linalg.vector_norm(vectors, dim=1, out=lengths[done])
                out = done.stop

        _in_parallel(finish, len(chunks))
        if max_neighbors is not None:
            nearest = _nearest(edge_index[0], edge_index[1], shifts, lengths, max_neighbors)
            edge_index, shifts = edge_index[:, nearest], shifts[nearest]
        return edge_index, shifts


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


def _cell_geometry(cell: np.ndarray, pbc: np.ndarray, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """Checks the cells ``(S, 3, 3)`` and returns, per system, the inverse ``(S, 3, 3)`` of the basis
    made of the cell rows on periodic axes and of orthonormal vectors normal to them on the others
    (its columns are reciprocal vectors g_a with |g_a| = 1 / width_a), and ``margin`` ``(S, 3)``, the
    cutoff in units of the cell's perpendicular widths."""
    if not np.isfinite(cell).all():
        raise ValueError("cell contains NaN or infinite values")
    lengths = np.linalg.norm(cell, axis=2)
    scale = np.maximum(lengths.max(axis=1), 1e-300)
    zero = pbc & ((lengths <= 1e-10 * scale[:, None]) | (lengths == 0))
    if zero.any():
        system, axis = np.argwhere(zero)[0]
        raise ValueError(f"system {system}: periodic axis {axis} has a zero-length cell vector")
    # the periodic vectors (others zeroed) are degenerate when their k-th singular value vanishes
    k = pbc.sum(axis=1)
    singular = np.linalg.svd(cell * pbc[:, :, None], compute_uv=False)
    degenerate = (k > 0) & (singular[np.arange(len(k)), np.maximum(k - 1, 0)] <= 1e-8 * singular[:, 0])
    if degenerate.any():
        system = int(np.argmax(degenerate))
        raise ValueError(
            f"system {system}: the periodic cell vectors {np.flatnonzero(pbc[system]).tolist()} "
            "are degenerate (collinear or coplanar: zero volume)"
        )
    basis = np.where(pbc.all(axis=1)[:, None, None], cell, np.eye(3))
    for system in np.flatnonzero(pbc.any(axis=1) & ~pbc.all(axis=1)):
        periodic = pbc[system]
        # Householder QR of [periodic vectors, e_x, e_y, e_z]: q[:, :k] spans the periodic vectors
        q, _ = np.linalg.qr(np.concatenate([cell[system][periodic], np.eye(3)]).T)
        basis[system][periodic] = cell[system][periodic]
        basis[system][~periodic] = q[:, periodic.sum() :].T
    inverse = np.linalg.inv(basis)
    return inverse, cutoff * np.linalg.norm(inverse, axis=1)


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
    """Indices of the k nearest edges of each centre, with a deterministic tie-break."""
    order = torch.arange(centre.numel(), device=centre.device)
    quantized = torch.round(lengths / TIE_TOLERANCE).long()  # distances this close count as tied
    for key in (shifts[:, 2], shifts[:, 1], shifts[:, 0], neighbour, quantized, centre):  # least significant first
        order = order[torch.argsort(key[order], stable=True)]
    sorted_centre = centre[order]
    first = torch.searchsorted(sorted_centre, sorted_centre, side="left")
    rank = torch.arange(order.numel(), device=order.device) - first
    return torch.sort(order[rank < k]).values
