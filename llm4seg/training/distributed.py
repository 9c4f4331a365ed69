"""DistributedDataParallel under torchrun: gloo on CPU, NCCL on CUDA. A no-op for one process."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class World:
    """This process's place in a torchrun job (rank, size, device); one process by default."""

    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that validates and writes the run folder."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every process (a no-op alone)."""
        if self.size > 1:
            dist.barrier()

    def main_failed(self, failed: bool) -> bool:
        """Rank 0's `failed` on every rank (a collective: all ranks call it), so that an error on
        rank 0 stops the others instead of leaving them waiting in the next barrier."""
        if self.size == 1:
            return failed
        flag = [failed]
        dist.broadcast_object_list(flag, src=0)
        return bool(flag[0])


def is_rank_zero_process() -> bool:
    """True in a single process or torchrun's rank 0 (read from the environment, before any init)."""
    return int(os.environ.get("RANK", "0")) == 0


def init_world(device: str = "auto") -> World:
    """The World from torchrun's environment (NCCL on GPUs, Gloo on CPUs), or one process."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device != "cpu"
    dist.init_process_group("nccl" if use_cuda else "gloo")
    dev = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    return World(rank=rank, size=size, device=dev)


def wrap(model: torch.nn.Module, world: World) -> torch.nn.Module:
    """The model in DistributedDataParallel when there are several processes, else as it is."""
    if world.size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [world.device.index] if world.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def shutdown(world: World) -> None:
    """Leave the process group (a no-op alone)."""
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()
