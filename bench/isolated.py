"""Helpers for benchmarks that measure each case in a fresh process, so peak memory is the case's own."""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable


def run_isolated(script: str, args: list[str]) -> dict:
    """Run ``script --one ARGS`` in a new interpreter and return the JSON it prints last; a case that
    fails (killed for memory, say) gives ``{"error": ...}`` instead."""
    out = subprocess.run([sys.executable, script, "--one", *args], capture_output=True, text=True)
    if out.returncode != 0:
        killed = " (killed: out of memory?)" if out.returncode in (-9, 137) else ""
        return {"error": f"exit code {out.returncode}{killed}", "stderr": out.stderr[-2000:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def cell(result: dict, width: int = 15) -> str:
    """``seconds peak_mb`` columns of one result, or its failure."""
    if "error" in result:
        return f"{'failed':>{width}} {result['error'][:12]:>12}"
    return f"{result['seconds']:>{width}.3f} {result['peak_mb']:>12.0f}"


def time_and_memory(fn: Callable[[], None], repeats: int, device: str) -> dict:
    """Median wall time of ``fn`` after one warm-up call [s], and peak memory [MB]: torch's peak
    CUDA allocation on a GPU, the process's peak resident set on a CPU."""
    import torch

    fn()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": statistics.median(times), "peak_mb": peak}
