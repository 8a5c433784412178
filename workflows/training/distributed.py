"""Data-parallel training under ``torchrun``: which process this is, and sums over all of them.

Each process evaluates its share of the global batch (frames ``rank::world_size``); the loss is
normalised by the counts of the whole global batch (see :mod:`.loss`), so summing the gradients
over processes gives exactly the gradient of one process on the global batch. Gradients are
summed with one all-reduce of a flat vector per step (what DDP's buckets do), which also works
for the double backward that force training needs, where ``DistributedDataParallel`` hooks do not.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Processes:
    """This process's place among the training processes (``rank`` 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """The process that writes files and shows progress."""
        return self.rank == 0

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` summed over all processes (in place; returned)."""
        if self.world_size > 1:
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values

    def sum_gradients(self, parameters: list[torch.nn.Parameter]) -> None:
        """Replace every parameter's gradient by its sum over processes (None counts as zeros)."""
        if self.world_size == 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
        flat = self.sum(torch.cat([g.reshape(-1) for g in grads]))
        offset = 0
        for p in parameters:
            p.grad = flat[offset:offset + p.numel()].view_as(p).clone()
            offset += p.numel()

    def broadcast_parameters(self, module: torch.nn.Module) -> None:
        """Give every process rank 0's weights."""
        if self.world_size > 1:
            for tensor in module.state_dict().values():
                dist.broadcast(tensor, src=0)

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def start(device_type: str) -> Processes:
    """Join the process group ``torchrun`` describes in the environment (gloo on CPU, NCCL on CUDA);
    a single process when ``WORLD_SIZE`` is unset or 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Processes()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return Processes(rank=dist.get_rank(), world_size=dist.get_world_size(),
                     local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def stop() -> None:
    """Leave the process group, if any."""
    if dist.is_initialized():
        dist.destroy_process_group()
