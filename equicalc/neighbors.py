"""Batched radius graphs with per-axis periodic boundary conditions.

Method: wrap every atom into its cell along the periodic axes, replicate the atoms into the
periodic images that can lie within the cutoff of the cell (their number per axis follows from
the cell's perpendicular widths), and find all image-atom pairs closer than the cutoff with
torch-cluster's radius search. Each pair is mapped back to ``(i, j, S)`` with the integer shift
``S`` that applies to the *unwrapped* positions, as ASE's ``neighbor_list`` does. The search runs
without gradients in float64; differentiable edge vectors are formed afterwards by
:class:`potentials.AtomGraph`.

Non-periodic axes never wrap and get no images, whatever the cell says, so molecules may carry no
cell at all; slabs may have a zero or arbitrary third vector.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor
from torch_cluster import radius

#: distances within this many Å of each other tie for the nearest-k cap [Å]
TIE_TOLERANCE = 1e-6
#: refuse systems that would need more image candidates than this (a near-zero cell vector)
MAX_IMAGE_CANDIDATES = 50_000_000


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
        cell = cell.detach().to(device=device, dtype=torch.float64)
        pbc = pbc.to(device=device, dtype=torch.bool)
        batch = batch.to(device)
        _check_geometry(pos, cell, pbc, batch)

        basis = _completed_basis(cell, pbc)
        inverse = torch.linalg.inv(basis)  # columns are reciprocal vectors g_a, with |g_a| = 1 / width_a
        frac = torch.einsum("na,nab->nb", pos, inverse[batch])
        wrap = torch.floor(frac) * pbc[batch]  # whole cells each atom sits away from its home cell
        wrapped = pos - torch.einsum("na,nab->nb", wrap, cell[batch])
        margin = cutoff * torch.linalg.vector_norm(inverse, dim=1)  # cutoff / width, per system and axis
        n_images = torch.ceil(margin).long() * pbc

        image_atom, image_shift = _images(frac - wrap, batch, margin, n_images)
        image_pos = wrapped[image_atom] + torch.einsum("ma,mab->mb", image_shift.double(), cell[batch[image_atom]])
        chunks = _search(image_pos, batch[image_atom], wrapped, batch, cutoff)

        # drop each atom's pair with its own home image (i == j, S == 0), writing the chunks of
        # pairs straight into the output
        home = torch.empty_like(batch)
        is_home = (image_shift == 0).all(dim=1)
        home[image_atom[is_home]] = torch.nonzero(is_home).flatten()
        kept = [torch.nonzero(col != home.index_select(0, centre)).flatten() for centre, col in chunks]
        edge_index = torch.empty((2, sum(k.numel() for k in kept)), dtype=torch.long, device=device)
        col = torch.empty_like(edge_index[1])
        start = 0
        for (chunk_centre, chunk_col), keep in zip(chunks, kept):
            stop = start + keep.numel()
            torch.index_select(chunk_centre, 0, keep, out=edge_index[0, start:stop])
            torch.index_select(chunk_col, 0, keep, out=col[start:stop])
            start = stop
        # S applies to the unwrapped positions: D = (r_j - w_j cell + s cell) - (r_i - w_i cell)
        wrap = wrap.long()
        image_table = torch.cat([image_atom[:, None], image_shift - wrap[image_atom]], dim=1)  # [n_images, 4]
        neighbour_and_shift = image_table.index_select(0, col)
        edge_index[1], shifts = neighbour_and_shift[:, 0], neighbour_and_shift[:, 1:]
        if wrap.any():
            shifts = shifts + wrap[edge_index[0]]
        if max_neighbors is not None:
            lengths = torch.linalg.vector_norm(image_pos[col] - wrapped[edge_index[0]], dim=1)
            nearest = _nearest(edge_index[0], edge_index[1], shifts, lengths, max_neighbors)
            edge_index, shifts = edge_index[:, nearest], shifts[nearest]
        return edge_index, shifts


def _check_geometry(pos: Tensor, cell: Tensor, pbc: Tensor, batch: Tensor) -> None:
    if not torch.isfinite(pos).all():
        bad = torch.nonzero(~torch.isfinite(pos).all(dim=1)).flatten()[:5].tolist()
        raise ValueError(f"positions contain NaN or infinite values (atoms {bad})")
    if not torch.isfinite(cell).all():
        raise ValueError("cell contains NaN or infinite values")
    lengths = torch.linalg.vector_norm(cell, dim=2)  # [n_systems, 3]
    scale = lengths.max(dim=1).values.clamp(min=1e-300)
    zero = pbc & (lengths <= 1e-10 * scale[:, None]).logical_or(lengths == 0)
    if zero.any():
        system, axis = torch.nonzero(zero)[0].tolist()
        raise ValueError(f"system {system}: periodic axis {axis} has a zero-length cell vector")
    for system in torch.nonzero(pbc.any(dim=1)).flatten().tolist():
        vectors = cell[system][pbc[system]]
        singular = torch.linalg.svdvals(vectors)
        if singular[-1] <= 1e-8 * singular[0]:
            raise ValueError(
                f"system {system}: the periodic cell vectors {pbc[system].nonzero().flatten().tolist()} "
                "are degenerate (collinear or coplanar: zero volume)"
            )


def _completed_basis(cell: Tensor, pbc: Tensor) -> Tensor:
    """Cell rows on periodic axes; on the others, orthonormal vectors normal to the periodic ones."""
    eye = torch.eye(3, dtype=cell.dtype, device=cell.device)
    basis = torch.where(pbc.all(dim=1)[:, None, None], cell, eye)
    mixed = pbc.any(dim=1) & ~pbc.all(dim=1)
    for system in torch.nonzero(mixed).flatten().tolist():
        periodic = pbc[system]
        columns = torch.cat([cell[system][periodic], eye]).T  # [3, k + 3], periodic vectors first
        q, _ = torch.linalg.qr(columns)  # Householder: q[:, :k] spans the periodic vectors
        basis[system][periodic] = cell[system][periodic]
        basis[system][~periodic] = q[:, int(periodic.sum()) :].T
    return basis


def _images(frac: Tensor, batch: Tensor, margin: Tensor, n_images: Tensor) -> tuple[Tensor, Tensor]:
    """Atom index and integer shift of every periodic image that can lie within the cutoff of its cell.

    ``frac`` holds wrapped fractional coordinates ``(n_atoms, 3)``; an image is kept when, on each
    periodic axis, its fractional coordinate lies within ``margin`` (cutoff / width) of [0, 1].
    """
    atoms, shifts = [], []
    for n in torch.unique(n_images, dim=0).tolist():
        systems = (n_images == torch.tensor(n, device=n_images.device)).all(dim=1)
        members = torch.nonzero(systems[batch]).flatten()
        n_grid = math.prod(2 * k + 1 for k in n)
        if members.numel() * n_grid > MAX_IMAGE_CANDIDATES:
            raise ValueError(f"a periodic cell is too small for the cutoff: {n_grid} images per atom would be needed")
        grid = torch.tensor(
            list(itertools.product(*(range(-k, k + 1) for k in n))), dtype=torch.long, device=frac.device
        )
        # the test is separable: decide each axis's shifts, then take the product (grid order)
        tol = margin[batch[members]] + 1e-9
        axes = []
        for a, k in enumerate(n):
            s = torch.arange(-k, k + 1, device=frac.device)
            image = frac[members, a, None] + s  # [members, 2k + 1]
            axes.append((image >= -tol[:, a, None]) & (image <= 1 + tol[:, a, None]) | (s == 0))
        inside = axes[0][:, :, None, None] & axes[1][:, None, :, None] & axes[2][:, None, None, :]
        atom_idx, grid_idx = torch.nonzero(inside.flatten(1), as_tuple=True)
        atoms.append(members[atom_idx])
        shifts.append(grid[grid_idx])
    if len(atoms) == 1:  # ascending atoms, so already sorted by system
        return atoms[0], shifts[0]
    atom = torch.cat(atoms)
    order = torch.argsort(batch[atom], stable=True)  # torch-cluster wants images sorted by system
    return atom[order], torch.cat(shifts)[order]


def _search(x: Tensor, batch_x: Tensor, y: Tensor, batch_y: Tensor, r: float) -> list[tuple[Tensor, Tensor]]:
    """Indices ``(row into y, col into x)`` of every pair closer than ``r`` (strictly, as ASE), none
    dropped, as consecutive chunks of rows."""
    n_systems = int(batch_y.max()) + 1
    if x.device.type == "cpu":  # the KD-tree collects every match; a cap of len(x) never truncates
        n_chunks = min(torch.get_num_threads(), max(1, y.shape[0] // 256))
        bounds = [y.shape[0] * k // n_chunks for k in range(n_chunks + 1)]

        def chunk(k: int) -> tuple[Tensor, Tensor]:
            lo, hi = bounds[k], bounds[k + 1]
            row, col = radius(x, y[lo:hi], r, batch_x, batch_y[lo:hi], max_num_neighbors=x.shape[0], batch_size=n_systems)
            return row.add_(lo), col

        # torch-cluster releases the GIL: query the KD-tree from several threads (this one included)
        others = [_thread_pool().submit(chunk, k) for k in range(1, n_chunks)]
        return [chunk(0)] + [f.result() for f in others]
    cap = 64
    while True:  # the CUDA kernel pre-allocates `cap` slots per centre: grow until none is full
        row, col = radius(x, y, r, batch_x, batch_y, max_num_neighbors=cap, batch_size=n_systems)
        if row.numel() == 0 or torch.bincount(row).max() < cap:
            return [(row, col)]
        cap *= 2


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
