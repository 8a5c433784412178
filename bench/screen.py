"""One AdsorbML screen of ``--placements`` configurations: where its wall time goes, and our batched
engine against placement-by-placement ASE LBFGS through our calculator (fairchem 2.x's way).

Workload: ``--adsorbate`` on ``--bulk`` (``--miller``), the slab built by ``equicalc screen``'s
builder, every symmetry-unique site plus random ones up to ``--placements`` (default 60), relaxed to
fmax 0.02 eV/Å in at most 300 LBFGS steps (AdsorbML's settings) with ``--model``, the best 5 checked
by EMT single points. Printed:

- the screen's wall time split into placement, ML relaxation, anomaly detection, verification and
  the rest (gas references, reading the store), with each share (goal: all but the relaxation
  under 10 %);
- placements relaxed per minute by the engine and by ASE's LBFGS on each placement in turn
  through ``EquiCalculator``, same model, precision and threads, in the same run, and the ratio;
- the engine's floor: its atom evaluations (sum over placements of (steps + 1) x atoms) times the
  model's time per atom of one energy+forces call on the engine's first batch, and the engine's
  relaxation time over it.

    python -m bench.screen                                  # eqv2-emt-oc, 60 placements, 2 threads
    python -m bench.screen --model sake-emt-oc --placements 20 --threads 1
    python -m bench.screen --device cuda --placements 240   # on a GPU
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.relax import first_fit, run_sequential, time_per_atom
from equicalc.models import resolve_device
from workflows.data.labellers import resolve_labeller
from workflows.relax.autobatch import estimate_max_atoms
from workflows.relax.lbfgs import BatchedLBFGS, LBFGSParameters
from workflows.screen.adsorbates import library_adsorbate
from workflows.screen.models import load_screen_model
from workflows.screen.pipeline import STAGES, Timer, screen_system
from workflows.screen.placement import make_placements
from workflows.screen.settings import ScreenSettings, ScreenSystem
from workflows.screen.store import ScreenStore
from workflows.screen.surfaces import cut_slab, read_bulk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="eqv2-emt-oc")
    parser.add_argument("--bulk", default="Pd")
    parser.add_argument("--miller", default="111")
    parser.add_argument("--adsorbate", default="CO")
    parser.add_argument("--placements", type=int, default=60)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="calls timed for the floor's time per atom")
    parser.add_argument("--skip-sequential", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    slab = cut_slab(read_bulk(args.bulk), tuple(int(c) for c in args.miller))
    adsorbate = library_adsorbate(args.adsorbate)
    heuristic = len(make_placements(slab, adsorbate, num_random=0))
    settings = ScreenSettings(num_random=args.placements - heuristic, device=args.device, dtype=args.dtype)
    system = ScreenSystem(f"{args.bulk}/{args.miller}/{args.adsorbate}", slab, adsorbate)
    model = load_screen_model(args.model, args.device, args.dtype)
    print(f"{system.name}: {len(slab)} slab atoms, {args.placements} placements ({heuristic} heuristic), "
          f"{args.model} {args.dtype} on {args.device}, {args.threads} threads")

    with tempfile.TemporaryDirectory() as folder:
        store = ScreenStore(Path(folder) / "screen.db")
        timer = Timer()
        start = time.perf_counter()
        screen_system(system, model, resolve_labeller("emt"), store, settings, timer)
        wall = time.perf_counter() - start
        initial = [row.toatoms() for row in store.rows("placement")]
        relaxed = {row.config_id: row for row in store.rows("ml")}
        steps = np.array([relaxed[row.config_id].steps for row in store.rows("placement")])
        energies = np.array([relaxed[row.config_id].relaxed_energy for row in store.rows("placement")])
        converged = sum(bool(row.converged) for row in relaxed.values())

    print(f"\nscreen wall time {wall:.1f} s ({converged}/{len(initial)} converged, {steps.sum()} steps)")
    other = wall - sum(timer.seconds.values())
    for stage in (*STAGES, "other"):
        seconds = timer.seconds.get(stage, other)
        print(f"  {stage:<13} {seconds:8.2f} s  {100 * seconds / wall:5.1f} %")
    print(f"  all but relaxation: {100 * (wall - timer.seconds['relaxation']) / wall:.1f} % (goal < 10 %)")

    engine_rate = 60 * len(initial) / timer.seconds["relaxation"]
    print(f"\nbatched engine: {engine_rate:.1f} placements/min")
    device = resolve_device(args.device)
    atom_evaluations = int(sum((s + 1) * len(a) for s, a in zip(steps, initial)))
    max_atoms = estimate_max_atoms(model.potential, initial, device, BatchedLBFGS(LBFGSParameters(), device).bytes_per_atom())
    per_atom = time_per_atom(model.potential, first_fit(initial, max_atoms), device, args.repeats)
    floor = atom_evaluations * per_atom
    print(f"floor: {atom_evaluations} atom evaluations x {1e6 * per_atom:.1f} us = {floor:.1f} s; "
          f"engine relaxation / floor = {timer.seconds['relaxation'] / floor:.2f}")
    if args.skip_sequential:
        return
    options = argparse.Namespace(device=args.device, dtype=args.dtype, optimizer="LBFGS", fmax=settings.fmax,
                                 max_steps=settings.max_steps)
    sequential = run_sequential(initial, model.potential, options)
    sequential_rate = 60 * len(initial) / sequential.seconds
    print(f"sequential ASE LBFGS + EquiCalculator: {sequential_rate:.1f} placements/min "
          f"({sequential.converged}/{len(initial)} converged, {sequential.steps} steps)")
    print(f"engine / sequential: {engine_rate / sequential_rate:.2f}x; "
          f"max |dE| {1e3 * np.nanmax(np.abs(sequential.energies - energies)):.3f} meV")


if __name__ == "__main__":
    main()
