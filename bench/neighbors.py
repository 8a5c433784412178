"""Neighbour-list timing: equicalc.radius_graph against vesin and ASE, measured in the same run.

Periodic fcc Cu (a = 3.61 Å) with 1,000, 8,000 and 64,000 atoms at a 6 Å cutoff, full lists with
integer shifts. Prints the best of several repeats and the ratios.

    python bench/neighbors.py [--device cuda] [--sizes 1000 8000 64000] [--no-ase]
"""

from __future__ import annotations

import argparse
import time

import torch
from ase.build import bulk
from ase.neighborlist import neighbor_list

from equicalc import SystemBatch, radius_graph

REPEATS = {1000: (5, 5, 10), 8000: (10, 10, 20), 64000: (20, 20, 40)}


def best_time(fn, repeats: int) -> tuple[float, int]:
    fn()  # warm-up
    times, n_pairs = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        n_pairs = fn()
        times.append(time.perf_counter() - start)
    return min(times), n_pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cutoff", type=float, default=6.0)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(REPEATS))
    parser.add_argument("--no-ase", action="store_true", help="skip ASE (slow at 64k atoms)")
    args = parser.parse_args()
    try:
        from vesin import NeighborList
    except ImportError:
        NeighborList = None
        print("vesin not installed (pip install vesin): its column is skipped")

    print(f"torch threads {torch.get_num_threads()}, device {args.device}, cutoff {args.cutoff} Å")
    print(f"{'atoms':>7} {'pairs':>10} {'equicalc s':>11} {'vesin s':>9} {'ase s':>8} {'ours/vesin':>10} {'ours/ase':>9}")
    ours_times, vesin_times = {}, {}
    for n in args.sizes:
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(REPEATS[n])
        systems = SystemBatch.from_atoms(atoms, dtype=torch.float64, device=args.device)

        def ours() -> int:
            edge_index, _ = radius_graph(systems.positions, systems.cell, systems.pbc, systems.batch, args.cutoff)
            if systems.positions.is_cuda:
                torch.cuda.synchronize()
            return edge_index.shape[1]

        repeats = {1000: 30, 8000: 10}.get(n, 5)  # best of several: timings on a shared machine jitter
        t_ours, pairs = best_time(ours, repeats)
        ours_times[n] = t_ours
        t_vesin = t_ase = float("nan")
        if NeighborList is not None:
            nl = NeighborList(cutoff=args.cutoff, full_list=True)
            t_vesin, pairs_vesin = best_time(
                lambda: len(nl.compute(atoms.positions, atoms.cell.array, True, quantities="ijS")[0]), repeats
            )
            assert pairs_vesin == pairs, (pairs_vesin, pairs)
        if not args.no_ase:
            t_ase, pairs_ase = best_time(lambda: len(neighbor_list("ijS", atoms, args.cutoff)[0]), 1 if n > 8000 else 2)
            assert pairs_ase == pairs, (pairs_ase, pairs)
        vesin_times[n] = t_vesin
        print(f"{n:>7} {pairs:>10} {t_ours:>11.4f} {t_vesin:>9.4f} {t_ase:>8.3f} "
              f"{t_ours / t_vesin:>10.2f} {t_ours / t_ase:>9.3f}")
    if 8000 in ours_times and 64000 in ours_times:
        print(f"scaling: t(64k) / t(8k) = {ours_times[64000] / ours_times[8000]:.2f} "
              f"(vesin: {vesin_times[64000] / vesin_times[8000]:.2f}; linear: 8)")


if __name__ == "__main__":
    main()
