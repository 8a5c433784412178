"""EquiformerV2 timing: ours against the reference (fairchem-core 1.10.0) in the same run.

The 31M configuration (L = 4, M = 2, 8 layers, 12 Å, 20 neighbours) on an OC20-sized system (an
80-atom Cu(111) slab with CO, periodic) and on a batch of 8 such systems. Rows: the reference
(energy + direct forces), ours in compatible mode with the reference's weights (the same outputs),
and ours in conservative mode (energy + autograd forces, 6 Å cutoff, no neighbour cap), also with
activation checkpointing. Each case runs in a fresh process so its
peak memory is its own. The reference is optional; see tools/eqv2_reference.py for how to make it
importable (PYTHONPATH).

    python bench/equiformer_v2.py [--device cuda] [--repeats 3] [--pairs 10]

``--pairs N`` instead times only the reference and ours-compatible on one system, N times each,
alternately, each in a fresh process, and prints the speed-up pair by pair: a shared machine's speed
drifts by 10-30 % over minutes, and pairing adjacent runs cancels most of that drift.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from isolated import cell, run_isolated, time_and_memory  # noqa: E402

CASES = ("reference", "ours-compatible", "ours-conservative", "ours-conservative-checkpointed")
#: without a neighbour cap a 12 Å graph has ~30 times the edges of the reference's 20-neighbour one;
#: the conservative row uses 6 Å (about 40 neighbours per atom in Cu) to compare like with like
CONSERVATIVE_CUTOFF = 6.0


def systems(n: int):
    from ase.build import add_adsorbate, fcc111, molecule

    out = []
    for k in range(n):
        slab = fcc111("Cu", (4, 4, 5), vacuum=8.0)
        add_adsorbate(slab, molecule("CO"), 2.0, "ontop")
        slab.rattle(0.05, seed=k)
        slab.pbc = True
        out.append(slab)
    return out


def measure(case: str, batch: int, device: str, repeats: int) -> dict:
    import torch

    from tools.eqv2_reference import CONFIGS, fairchem_checkpoint, reference_batch, reference_model

    atoms = systems(batch)
    if case.startswith("ours-conservative"):
        from equicalc import SystemBatch, predict
        from potentials import EquiformerV2, EquiformerV2Config

        cfg = CONFIGS["31M"]
        model = EquiformerV2(EquiformerV2Config(
            cutoff=CONSERVATIVE_CUTOFF, num_layers=cfg["num_layers"], lmax=cfg["lmax_list"][0], mmax=cfg["mmax_list"][0],
            sphere_channels=cfg["sphere_channels"], attn_hidden_channels=cfg["attn_hidden_channels"],
            num_heads=cfg["num_heads"], attn_alpha_channels=cfg["attn_alpha_channels"],
            attn_value_channels=cfg["attn_value_channels"], ffn_hidden_channels=cfg["ffn_hidden_channels"],
            edge_channels=cfg["edge_channels"], activation_checkpointing=case.endswith("checkpointed"))).to(device)
    else:
        reference = reference_model(CONFIGS["31M"], seed=0).to(device)
        if case == "ours-compatible":
            from equicalc import SystemBatch, predict
            from potentials.equiformer_v2.fairchem_import import load_fairchem

            model = load_fairchem(fairchem_checkpoint(reference, CONFIGS["31M"]), "reference weights").to(device)
            del reference
    if case == "reference":
        data = reference_batch(atoms).to(device)

        def run() -> None:
            with torch.no_grad():  # as its calculator runs it: no autograd graph for direct forces
                reference(data)["forces"].sum().item()
    else:
        batch_systems = SystemBatch.from_atoms(atoms, dtype=torch.float32, device=device)
        # as our calculator runs a direct-force model: forward only, in inference mode
        mode = torch.inference_mode if case == "ours-compatible" else contextlib.nullcontext

        def run() -> None:
            with mode():
                predict(model, batch_systems, forces=True, stress=False).forces.sum().item()

    return time_and_memory(run, repeats, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=0, help="only alternating reference/ours runs on one system")
    parser.add_argument("--one", nargs=2, metavar=("CASE", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]), args.device, args.repeats)))
        return
    try:
        import fairchem.core  # noqa: F401

        cases = CASES
    except ImportError:
        print("fairchem-core is not importable: only our conservative mode is timed (see tools/eqv2_reference.py)")
        cases = CASES[2:]
    if args.pairs:
        if "reference" in cases:
            paired_speedup(args.pairs, args.device, args.repeats)
        return
    memory = "peak GPU MB" if args.device.startswith("cuda") else "peak RSS MB"
    print(f"EquiformerV2 31M, device {args.device}, float32, median of {args.repeats}")
    print(f"{'case':31s} {'1 x 82 atoms s':>15} {memory:>12} {'8 x 82 atoms s':>15} {memory:>12}")
    results = {}
    for case in cases:
        results[case] = [run_isolated(__file__, [case, str(b), "--device", args.device, "--repeats", str(args.repeats)])
                         for b in (1, 8)]
        print(f"{case:31s} {' '.join(cell(r) for r in results[case])}", flush=True)
        for r in results[case]:
            if "error" in r:
                print(f"  {r['error']}: {r['stderr'].strip().splitlines()[-1] if r['stderr'].strip() else ''}")
    if "reference" in results:
        for case in cases[1:]:
            for k, label in enumerate(("1 system", "8 systems")):
                ref, ours = results["reference"][k], results[case][k]
                if "error" not in ref and "error" not in ours:
                    print(f"speed-up of {case} over the reference, {label}: {ref['seconds'] / ours['seconds']:.2f}x")


def paired_speedup(n_pairs: int, device: str, repeats: int) -> None:
    """Alternate the reference and ours-compatible on one system; print each pair's speed-up, their
    median and range, and the ratio of the median times."""
    times: dict[str, list[float]] = {"reference": [], "ours-compatible": []}
    for k in range(n_pairs):
        for case, seconds in times.items():
            result = run_isolated(__file__, [case, "1", "--device", device, "--repeats", str(repeats)])
            if "error" in result:
                print(f"pair {k + 1}: {case} failed: {result['error']}")
                return
            seconds.append(result["seconds"])
        print(f"pair {k + 1}: reference {times['reference'][-1]:.2f} s, ours-compatible "
              f"{times['ours-compatible'][-1]:.2f} s, {times['reference'][-1] / times['ours-compatible'][-1]:.2f}x",
              flush=True)
    ratios = [r / o for r, o in zip(times["reference"], times["ours-compatible"])]
    medians = statistics.median(times["reference"]) / statistics.median(times["ours-compatible"])
    print(f"paired speed-up, {n_pairs} pairs: median {statistics.median(ratios):.2f}x "
          f"(range {min(ratios):.2f}-{max(ratios):.2f}x); ratio of the median times {medians:.2f}x")


if __name__ == "__main__":
    main()
