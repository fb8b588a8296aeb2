"""Training on several processes with PyTorch's own engine: `torchrun`, DistributedDataParallel, gloo or NCCL.

`gmtrouter train --workers N` starts `torchrun --standalone --nproc-per-node N -m gmtrouter train ...`;
`torchrun` on several machines (`--nnodes`, `--rdzv-endpoint`) starts the same command anywhere. Each process
(rank) learns from different users at every step and DistributedDataParallel averages the gradients, so N
ranks see N times the users per step; rank 0 alone validates (its verdict is sent to the others, so every rank
stops at the same step) and saves the model.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Workers:
    """This process's place among the training processes."""

    rank: int
    world: int

    @property
    def leader(self) -> bool:
        return self.rank == 0


def workers() -> Workers | None:
    """The process group this process was started in by `torchrun` (joined on first call), or None when it
    runs alone. CPU processes talk over gloo, GPU ones over NCCL."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return Workers(dist.get_rank(), dist.get_world_size())


def agree(flag: bool, source: Workers | None) -> bool:
    """The leader's `flag` on every rank (as it is where there is a single process)."""
    if source is None:
        return flag
    decision = [flag]
    dist.broadcast_object_list(decision, src=0)
    return bool(decision[0])


def finish(source: Workers | None) -> None:
    """Leave the process group once every rank is done."""
    if source is not None and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def launch(arguments: Sequence[str], count: int) -> int:
    """Run `gmtrouter ARGUMENTS` on `count` local processes under torchrun; its exit status."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={count}",
        "-m",
        "gmtrouter",
        *arguments,
    ]
    return subprocess.call(command, env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
