"""Several processes under torchrun, on one code path: NCCL on GPUs, gloo on CPUs.

Without torchrun's variables every function here is a no-op and training runs as one process,
exactly as before. Under torchrun (even with one process) the data is sharded by a
DistributedSampler, so a one-process torchrun run sees the same global batches as an N-process run
with 1/N of the batch size.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from .registry import HerdError


@dataclass
class Ranks:
    """Where this process stands: its rank, the number of processes, its GPU index on the node."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    enabled: bool = False  # launched by torchrun

    @property
    def main(self) -> bool:
        return self.rank == 0


def start(device: str) -> Ranks:
    """Join torchrun's process group if there is one (NCCL for CUDA, gloo otherwise)."""
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        return Ranks()
    ranks = Ranks(
        int(os.environ["RANK"]),
        int(os.environ["WORLD_SIZE"]),
        int(os.environ.get("LOCAL_RANK", "0")),
        True,
    )
    if not dist.is_initialized():
        cuda = device != "cpu" and torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(ranks.local_rank)
        dist.init_process_group("nccl" if cuda else "gloo")
    return ranks


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce_sum(t: Tensor) -> Tensor:
    """The sum of ``t`` over all processes; differentiable (the backward sums the gradients too)."""
    if not dist.is_initialized():
        return t
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(t)


def sum_floats(values: list[float], device) -> list[float]:
    """Sum plain numbers (e.g. loss sums and sample counts) over all processes."""
    if not dist.is_initialized():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def any_rank(flag: bool, device) -> bool:
    """True on every process if it is true on any: lets all ranks stop together instead of
    hanging."""
    return sum_floats([float(flag)], device)[0] > 0


def broadcast(value, src: int = 0):
    """``value`` of rank ``src`` on every process (any picklable object)."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def check_same(value: str, what: str) -> None:
    """Fail on every rank, with one line, unless ``value`` is the same on all of them."""
    if not dist.is_initialized():
        return
    digest = hashlib.sha256(value.encode()).hexdigest()
    digests = [None] * dist.get_world_size()
    dist.all_gather_object(digests, digest)
    if len(set(digests)) > 1:
        bad = [r for r, d in enumerate(digests) if d != digests[0]]
        raise HerdError(
            f"the processes disagree on {what} (ranks {bad} differ from rank 0); launch every rank "
            "with the same options and data"
        )
