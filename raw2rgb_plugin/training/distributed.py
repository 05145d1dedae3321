"""Processes and devices of a training run: one process, or one rank of a `torchrun` group.

Under `torchrun` (RANK/WORLD_SIZE/LOCAL_RANK in the environment) each rank trains on its shard of
every epoch and only rank 0 writes; the helpers here are the few collective operations the
trainer needs, each a no-op for one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from raw2rgb_plugin.runtime.device import choose_device


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False  # this process joined the group, so it also leaves it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_name: str) -> DistributedContext:
    """Join the process group torchrun describes in the environment; a no-op for one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistributedContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if dist.is_initialized():
        return DistributedContext(rank, world, local_rank, initialized_here=False)
    use_cuda = device_name != "cpu" and not device_name.startswith("mps") and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistributedContext(rank, world, local_rank, initialized_here=True)


def leave_distributed(ctx: DistributedContext) -> None:
    """Leave the process group if `init_distributed` joined it (an embedding caller keeps its own)."""
    if ctx.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def training_device(name: str, ctx: DistributedContext) -> torch.device:
    """`choose_device(name)`, with each rank on its own GPU when the name gives no index."""
    device = choose_device(name)
    if device.type == "cuda" and ctx.enabled and device.index is None:
        device = torch.device("cuda", ctx.local_rank)
    return device


def _collective_device(device: torch.device) -> torch.device | str:
    # NCCL reduces CUDA tensors only; gloo (the CPU backend) reduces CPU tensors.
    return device if device.type == "cuda" else "cpu"


def any_rank(flag: bool, ctx: DistributedContext, device: torch.device) -> bool:
    """True on every rank if `flag` is true on any of them (a GPU sync: call it sparingly)."""
    if not ctx.enabled:
        return flag
    reduced = torch.tensor([1.0 if flag else 0.0], device=_collective_device(device))
    dist.all_reduce(reduced, op=dist.ReduceOp.MAX)
    return bool(reduced.item())


def sum_over_ranks(values: torch.Tensor, ctx: DistributedContext, device: torch.device) -> torch.Tensor:
    """`values` (on the CPU) summed over all ranks, back on the CPU."""
    if not ctx.enabled:
        return values
    reduced = values.to(_collective_device(device))
    dist.all_reduce(reduced)
    return reduced.cpu()
