"""Batched relaxation: our engine against sequential ASE relaxation and TorchSim, and against the model's floor.

Workload: ``--n`` adsorbate-on-slab structures (default 64) built reproducibly from ``--seed`` with
the data workflow's builders (``workflows.data``): a random bulk of the model's elements (fcc
metals and L1_2 alloys), a random facet ((111), (100), (110), (211); 16-36 slab atoms, the lower
half fixed by ``FixAtoms``, OC20's tag 0), a random adsorbate (one of 17, 1-5 atoms) on a random
site. All are relaxed to ``--fmax`` (0.05 eV/Å) with ``--optimizer`` (FIRE or LBFGS, ASE's
defaults) and the same model, device and precision by

(a) our batched engine, ``workflows.relax.relax_batch`` (one model call per step for the batch);
(b) ASE's optimizer on each structure in turn through ``equicalc.EquiCalculator`` (as fairchem
    2.x's AdsorbML runs today);
(c) TorchSim's batched FIRE through ``workflows.torchsim.relax_with_torchsim`` (our model behind
    its model interface; convergence checked every 5 steps, its default), where ``torch_sim`` and
    the adapter import, for FIRE only; its slabs are made periodic along z (their 12 Å of vacuum
    is far beyond the models' 4.5 Å cutoff, so energies and forces are unchanged).

Printed, per method: wall time, structures per minute, converged structures, optimizer steps,
and its model calls (every ``equicalc.predict`` it makes, timed): the atoms they evaluated in all,
their time, the model's time per atom evaluation and the share of the wall time spent outside
them (the method's own overhead). Then the max |E_batched - E_sequential| over the structures
(the acceptance wants 1 meV) and how many differ in step count; the **floor**, the time the model
alone needs for every evaluation the engine made (its atom evaluations, the sum over structures of
(steps + 1) x atoms, times the time per atom of one ``predict`` of energy and forces on a batch
of the engine's size: the engine's first batch, median of ``--repeats`` calls, measured just
before and just after the engine and averaged) and the engine's time over it (goal: within 10 %);
the speed-ups. This shared machine's speed drifts by tens of per cent within minutes: ``--rounds``
repeats everything, in reversed order every other round, and the model-time columns compare the
methods per atom evaluation whatever the drift.

    python bench/relax.py                              # both shipped models, 64 structures, CPU
    python bench/relax.py --model sake-emt-oc --quick  # 8 structures: a smoke test
    python bench/relax.py --device cuda --n 256        # on a GPU
    python bench/relax.py --scan-batch                 # time per atom against the batch size (CPU budget)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms
from ase.data import chemical_symbols
from ase.optimize import FIRE, LBFGS

from equicalc import EquiCalculator, SystemBatch, predict
from equicalc.models import prepare_model, resolve_device, resolve_dtype, resolve_model
from potentials import Potential
from workflows.data.adsorbates import ADSORBATES, adsorbate_elements, place_adsorbate
from workflows.data.bulks import BULKS, bulk_elements
from workflows.data.slabs import FACETS, make_slab
from workflows.relax import relax_batch
from workflows.relax.autobatch import estimate_max_atoms
from workflows.relax.engine import OPTIMIZERS

MODELS = ("sake-emt-oc", "eqv2-emt-oc")
ASE_OPTIMIZERS = {"FIRE": FIRE, "LBFGS": LBFGS}


def adslabs(n: int, seed: int, elements: set[str]) -> list[Atoms]:
    """``n`` adsorbate-on-slab structures of the given elements, the same for the same ``seed``."""
    rng = np.random.default_rng(seed)
    bulks = [b for b in BULKS if bulk_elements(b) <= elements]
    adsorbates = [a for a in ADSORBATES if adsorbate_elements(a) <= elements]
    structures = []
    for _ in range(n):
        slab = make_slab(bulks[rng.integers(len(bulks))], FACETS[rng.integers(len(FACETS))])
        structures.append(place_adsorbate(slab, adsorbates[rng.integers(len(adsorbates))], rng))
    return structures


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_per_atom(model: Potential, structures: list[Atoms], device: torch.device, repeats: int) -> float:
    """Median seconds per atom of one energy+forces ``predict`` on ``structures`` as one batch."""
    systems = SystemBatch.from_atoms(structures, dtype=torch.float64, device=device)
    times = []
    for k in range(repeats + 1):
        synchronize(device)
        start = time.perf_counter()
        with torch.inference_mode(model.direct_forces):
            predict(model, systems, forces=True, stress=False)
        synchronize(device)
        if k:  # the first call warms up
            times.append(time.perf_counter() - start)
    return statistics.median(times) / len(systems.positions)


def first_fit(structures: list[Atoms], max_atoms: int) -> list[Atoms]:
    """The structures the engine puts in its first batch (first fit within ``max_atoms``)."""
    chosen, room = [], max_atoms
    for atoms in structures:
        if len(atoms) <= room or not chosen:
            chosen.append(atoms)
            room -= len(atoms)
    return chosen


@dataclass
class Run:
    """One method's run: wall time, what its model calls took, its results (input order)."""

    label: str
    seconds: float
    model_seconds: float  # inside equicalc.predict
    atom_evaluations: int  # atoms evaluated by equicalc.predict, summed over its calls
    converged: int
    steps: int
    energies: np.ndarray  # final energies [eV]
    step_counts: np.ndarray

    def print(self, n: int) -> None:
        outside = 100 * (1 - self.model_seconds / self.seconds)
        print(f"{self.label:<36} {self.seconds:>8.2f} {60 * n / self.seconds:>8.1f} {self.converged:>5}/{n:<3} "
              f"{self.steps:>6} {self.atom_evaluations:>9} {self.model_seconds:>8.2f} "
              f"{1e6 * self.model_seconds / self.atom_evaluations:>9.1f} {outside:>8.1f}")


HEADER = (f"{'method':<36} {'time [s]':>8} {'str/min':>8} {'converged':>9} {'steps':>6} {'atom-ev.':>9} "
          f"{'model [s]':>8} {'us/atom-ev':>9} {'outside %':>8}")


@contextmanager
def model_calls(module, device: torch.device):
    """Time every ``predict`` call ``module`` makes (its name for ``equicalc.predict``): seconds and atoms."""
    record = {"seconds": 0.0, "atoms": 0}
    original = module.predict

    def timed(model, systems, **kwargs):
        synchronize(device)
        start = time.perf_counter()
        out = original(model, systems, **kwargs)
        synchronize(device)
        record["seconds"] += time.perf_counter() - start
        record["atoms"] += len(systems.positions)
        return out

    module.predict = timed
    try:
        yield record
    finally:
        module.predict = original


def run_engine(structures, model, args, max_atoms) -> Run:
    """Our batched engine."""
    import workflows.relax.engine as engine

    with model_calls(engine, resolve_device(args.device)) as calls:
        start = time.perf_counter()
        results = list(relax_batch(structures, model, optimizer=args.optimizer, fmax=args.fmax,
                                   max_steps=args.max_steps, device=args.device, dtype=args.dtype, max_atoms=max_atoms))
        elapsed = time.perf_counter() - start
    results.sort(key=lambda r: r.index)
    return Run("batched engine", elapsed, calls["seconds"], calls["atoms"], sum(r.converged for r in results),
               sum(r.steps for r in results), np.array([r.energies[-1] for r in results]),
               np.array([r.steps for r in results]))


def run_sequential(structures, model, args) -> Run:
    """ASE's optimizer on each structure in turn, through our calculator."""
    import equicalc.calculator

    calc = EquiCalculator(model, device=args.device, dtype=args.dtype)
    energies, steps, converged = [], [], []
    with model_calls(equicalc.calculator, resolve_device(args.device)) as calls:
        start = time.perf_counter()
        for atoms in structures:
            atoms = atoms.copy()
            atoms.calc = calc
            opt = ASE_OPTIMIZERS[args.optimizer](atoms, logfile=None)
            converged.append(opt.run(fmax=args.fmax, steps=args.max_steps))
            energies.append(atoms.get_potential_energy())
            steps.append(opt.nsteps)
        elapsed = time.perf_counter() - start
    return Run("sequential ASE + EquiCalculator", elapsed, calls["seconds"], calls["atoms"], sum(converged),
               sum(steps), np.array(energies), np.array(steps))


def run_torchsim(structures, model, args, max_atoms) -> Run | None:
    """TorchSim's batched FIRE with our model (None where TorchSim or the adapter does not import)."""
    try:
        import torch_sim  # noqa: F401

        import workflows.torchsim as adapter
    except ImportError:
        return None
    periodic = []
    for atoms in structures:
        atoms = atoms.copy()
        atoms.pbc = True
        periodic.append(atoms)
    with model_calls(adapter, resolve_device(args.device)) as calls:
        start = time.perf_counter()
        results = adapter.relax_with_torchsim(periodic, model, fmax=args.fmax, max_steps=args.max_steps, max_step=0.2,
                                              max_atoms_per_batch=max_atoms, device=args.device, dtype=args.dtype)
        elapsed = time.perf_counter() - start
    return Run("TorchSim FIRE (checks every 5 steps)", elapsed, calls["seconds"], calls["atoms"],
               sum(r.converged for r in results), sum(r.steps for r in results),
               np.array([r.energies[-1] for r in results]), np.array([r.steps for r in results]))


def bench_model(name: str, args: argparse.Namespace) -> None:
    device = resolve_device(args.device)
    model, _ = resolve_model(name)
    model = prepare_model(model, device, resolve_dtype(args.dtype), owned=True)
    elements = {chemical_symbols[z] for z in model.elements}
    structures = adslabs(args.n, args.seed, elements)
    sizes = [len(a) for a in structures]
    fixed = sum(len(a.constraints[0].get_indices()) for a in structures)
    optimizer_class, parameters_class = OPTIMIZERS[args.optimizer]
    state_bytes = optimizer_class(parameters_class(), device).bytes_per_atom()
    max_atoms = args.max_atoms or estimate_max_atoms(model, structures, device, state_bytes)
    print(f"\n== {name} ({model.config.__class__.__name__}, {'direct' if model.direct_forces else 'conservative'} "
          f"forces) on {device}, {args.dtype}, {torch.get_num_threads()} threads; {args.optimizer}, fmax "
          f"{args.fmax} eV/Å, at most {args.max_steps} steps")
    print(f"{len(structures)} structures of {min(sizes)}-{max(sizes)} atoms ({sum(sizes)} atoms, {fixed} fixed); "
          f"engine budget {max_atoms} atoms{' (estimated)' if not args.max_atoms else ''}")

    first = first_fit(structures, max_atoms)
    print(f"floor batch: the engine's first, {len(first)} structures, {sum(len(a) for a in first)} atoms")
    for round_ in range(args.rounds):
        print(f"-- round {round_ + 1} of {args.rounds} (load average {os.getloadavg()[0]:.2f})")
        one_round(structures, model, args, max_atoms, first, round_)


def one_round(structures, model, args, max_atoms, first, order: int) -> None:
    """The engine between two floor measurements, sequential ASE and TorchSim (in the given order
    or reversed, as ``order`` is even or odd); one report."""
    device = resolve_device(args.device)
    methods = [("engine", lambda: run_engine(structures, model, args, max_atoms))]
    if not args.no_sequential:
        methods.append(("sequential", lambda: run_sequential(structures, model, args)))
    if args.optimizer != "FIRE":
        print("TorchSim: FIRE only (the adapter runs TorchSim's FIRE)")
    elif not args.no_torchsim:
        methods.append(("torchsim", lambda: run_torchsim(structures, model, args, max_atoms)))
    runs, per_atom = {}, []
    for key, method in methods if order % 2 == 0 else methods[::-1]:
        if key == "engine":
            per_atom.append(time_per_atom(model, first, device, args.repeats))
        runs[key] = method()
        if key == "engine":  # the machine drifts: measure again
            per_atom.append(time_per_atom(model, first, device, args.repeats))
    if runs.get("torchsim", 0) is None:
        print("TorchSim: not installed")
        del runs["torchsim"]

    engine = runs["engine"]
    print(HEADER)
    for run in runs.values():
        run.print(len(structures))
    floor = engine.atom_evaluations * statistics.mean(per_atom)
    before, after = (1e6 * t for t in per_atom)
    print(f"floor = {engine.atom_evaluations} atom evaluations x {statistics.mean(per_atom) * 1e6:.1f} us/atom (the "
          f"floor batch before and after the engine: {before:.1f}, {after:.1f}) = {floor:.2f} s; "
          f"engine / floor = {engine.seconds / floor:.3f} (goal <= 1.10)")
    if "sequential" in runs:
        seq = runs["sequential"]
        diff = np.abs(engine.energies - seq.energies)
        print(f"max |E_batched - E_sequential| = {diff.max() * 1e3:.3g} meV over {len(diff)} structures (acceptance: "
              f"1 meV; {int((diff > 1e-3).sum())} above); step counts differ for "
              f"{int((engine.step_counts != seq.step_counts).sum())}")
        print(f"speed-up of the engine over sequential: {seq.seconds / engine.seconds:.2f}x")
    if "torchsim" in runs:
        ts = runs["torchsim"]
        print(f"speed-up of the engine over TorchSim: {ts.seconds / engine.seconds:.2f}x; max |E_batched - "
              f"E_TorchSim| = {np.abs(engine.energies - ts.energies).max() * 1e3:.3g} meV (another FIRE variant)")


def scan_batch(name: str, args: argparse.Namespace) -> None:
    """Time per atom of energy+forces against the batch size, to size the CPU budget."""
    device = resolve_device(args.device)
    model, _ = resolve_model(name)
    model = prepare_model(model, device, resolve_dtype(args.dtype), owned=True)
    structures = adslabs(256, args.seed, {chemical_symbols[z] for z in model.elements})
    print(f"\n== {name} on {device}, {args.dtype}, {torch.get_num_threads()} threads: us per atom of one E+F call")
    for budget in (32, 64, 128, 256, 512, 1024, 2048, 4096):
        batch = first_fit(structures, budget)
        print(f"{budget:>5} atoms budget ({len(batch):>3} structures, {sum(len(a) for a in batch):>5} atoms): "
              f"{time_per_atom(model, batch, device, args.repeats) * 1e6:8.1f} us/atom")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=(*MODELS, "both"), default="both")
    parser.add_argument("--device", default="cpu", help="'cpu', 'cuda', 'cuda:N' or 'auto' (default: cpu)")
    parser.add_argument("--dtype", default="float64", choices=("float32", "float64"))
    parser.add_argument("--optimizer", default="FIRE", choices=tuple(ASE_OPTIMIZERS))
    parser.add_argument("--n", type=int, default=64, help="structures (default 64)")
    parser.add_argument("--quick", action="store_true", help="8 structures, a smoke test")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fmax", type=float, default=0.05, help="eV/Å (default 0.05)")
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--max-atoms", type=int, help="the engine's batch budget in atoms (default: its estimate)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of the floor measurement")
    parser.add_argument("--rounds", type=int, default=1, help="repeat every measurement (the machine drifts)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--no-sequential", action="store_true", help="skip sequential ASE relaxation")
    parser.add_argument("--no-torchsim", action="store_true", help="skip TorchSim")
    parser.add_argument("--scan-batch", action="store_true", help="only time E+F per atom against the batch size")
    args = parser.parse_args()
    if args.quick:
        args.n = 8
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in MODELS if args.model == "both" else (args.model,):
        (scan_batch if args.scan_batch else bench_model)(name, args)


if __name__ == "__main__":
    main()
