"""How many atoms the batched engine evaluates at once: its budget, from a trial evaluation on CUDA.

On CUDA the budget is set by memory. One trial evaluation of the first structures (about
``TRIAL_ATOMS`` atoms) measures the peak memory the model's energy and forces take per atom
(``torch.cuda.max_memory_allocated`` over the trial, divided by its atoms; fixed costs are
counted per atom too, which errs on the safe side); the optimizer's state per atom is added, and
the budget is ``CUDA_MEMORY_FRACTION`` of the free memory (free on the device plus what torch's
allocator holds unused) over that. Edges per atom are what drive a model's memory; structures of
one workload (slabs with adsorbates, bulk crystals) have similar edges per atom, and the trial runs
on the workload's own first structures.

On CPU memory is rarely the limit; the budget ``CPU_MAX_ATOMS`` is a batch size in the range where
the time per atom of an energy+forces call is lowest. ``bench/relax.py --scan-batch`` (float64,
adsorbate-on-slab structures of 17-41 atoms, 2 cores) measured for ``sake-emt-oc`` 1016, 612, 660,
478, 483, 440, 484, 734 us/atom at 32, 64, 128, 256, 512, 1024, 2048, 4096 atoms with 2 threads
(flat from 128 to 2048 atoms with 1 thread: 759-847 us/atom), and for ``eqv2-emt-oc`` 3256, 1894,
1549, 1302, 1404, 1727, 2760, 2145 us/atom: a few hundred atoms amortise the per-call costs, and
beyond about a thousand the working set leaves the caches. 512 atoms sits in the flat part for
both and keeps the batch small enough that it stays full until the last structures.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from ase import Atoms

from equicalc import SystemBatch, predict
from potentials import Potential

#: atoms per batch on CPU (measured: see the module docstring)
CPU_MAX_ATOMS = 512
#: atoms of the trial evaluation on CUDA
TRIAL_ATOMS = 512
#: share of the free CUDA memory the batch may fill
CUDA_MEMORY_FRACTION = 0.7


def estimate_max_atoms(
    model: Potential, structures: Sequence[Atoms], device: torch.device, state_bytes_per_atom: int
) -> int:
    """The batch budget [atoms] for relaxing ``structures`` with ``model`` on ``device``.

    Args:
        model: the prepared model (on ``device``, in its dtype, eval mode).
        structures: the structures to relax (the first ones make the trial batch on CUDA).
        device: where the model runs.
        state_bytes_per_atom: memory the optimizer keeps per atom [bytes].

    Returns:
        ``CPU_MAX_ATOMS`` on CPU; on CUDA the number of atoms whose evaluation and optimizer state
        fit in ``CUDA_MEMORY_FRACTION`` of the free memory, at least the largest structure.
    """
    largest = max(len(atoms) for atoms in structures)
    if device.type != "cuda":
        return max(CPU_MAX_ATOMS, largest)
    trial, n_atoms = [], 0
    for atoms in structures:
        if n_atoms >= TRIAL_ATOMS:
            break
        if _evaluates(model, [atoms], device):  # a structure the graph builder refuses (coinciding atoms) is left out
            trial.append(atoms)
            n_atoms += len(atoms)
    if not trial:
        return largest
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    _evaluates(model, trial, device)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    free, _ = torch.cuda.mem_get_info(device)
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    per_atom = peak / n_atoms + state_bytes_per_atom
    return max(int(CUDA_MEMORY_FRACTION * free / per_atom), largest)


def _evaluates(model: Potential, structures: list[Atoms], device: torch.device) -> bool:
    """Evaluate energy and forces of ``structures`` as one batch; False if ``predict`` refuses them."""
    systems = SystemBatch.from_atoms(structures, dtype=torch.float64, device=device)
    try:
        with torch.inference_mode(model.direct_forces):
            predict(model, systems, forces=True, stress=False)
    except ValueError:
        return False
    return True
