"""Data-parallel training under torchrun: the process group, and the few collectives a run needs.

`torchrun --nproc-per-node N -m blockswap train …` starts N copies of the command with RANK, WORLD_SIZE,
LOCAL_RANK and LOCAL_WORLD_SIZE in their environment; `joined` turns that into a process group (nccl on
CUDA, each process on the GPU of its LOCAL_RANK; gloo on the CPU). Without those variables (or with
WORLD_SIZE=1) a run is the single process it always was: `SINGLE`, whose collectives do nothing, so the
single-process path stays bitwise what it was.

How the work is split (see `train` and `data.iterate_batches`): every rank builds the same seeded order of
an epoch and takes its contiguous slice of each global batch, so the union of one step's per-rank batches
is the single-process batch; DistributedDataParallel averages the gradients; the step's loss and error
counts are all-reduced, so every rank keeps the metrics of the global batch; the test set is split by
rank and its counts summed. Only rank 0 writes files or prints.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..core.errors import BlockswapError

ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one run."""
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1  # processes on this machine: they share its CPUs
    device: torch.device = torch.device("cpu")  # where collectives' tensors live (nccl needs CUDA ones)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """Sum `t` over all processes, in place (and return it)."""
        if self.size > 1:
            moved = t.to(self.device)
            dist.all_reduce(moved)
            t.copy_(moved)
        return t

    def max(self, value: int) -> int:
        if self.size == 1:
            return value
        t = torch.tensor([value], dtype=torch.long, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    def gather(self, items: list) -> list:
        """Every process's `items` (picklable), concatenated in rank order, on every process."""
        if self.size == 1:
            return items
        parts = [None] * self.size
        dist.all_gather_object(parts, items)
        return [item for part in parts for item in part]

    def share(self, size: int) -> slice:
        """This process's contiguous part of `size` items (ranks' parts differ in length by at most one)."""
        return slice(self.rank * size // self.size, (self.rank + 1) * size // self.size)

    def share_buffers(self, net: torch.nn.Module) -> None:
        """Give every process rank 0's BatchNorm statistics. Without SyncBN each rank updates them from its own
        shard; DDP copies rank 0's at each forward, but after the last step of an epoch they differ, and the
        test and the checkpoint must see one network."""
        if self.size > 1:
            for b in net.buffers():
                dist.broadcast(b, 0)

    def wrap(self, net: torch.nn.Module, sync_bn: bool) -> torch.nn.Module:
        """`net` as it is trained: itself alone, or in DistributedDataParallel (after SyncBN if asked)."""
        if self.size == 1:
            return net
        if sync_bn:
            # The conversion keeps the parameters and buffers (the same tensors), so the optimiser built on
            # `net` before still holds them.
            net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(net, device_ids=ids)


SINGLE = World()


class AgreedStop:
    """The stop requests (signal numbers, as `runner.stop_requests` records them) of all processes as one
    answer: a stop signal reaches the processes at different steps, and one that stops alone would leave the
    others waiting in a collective forever.

    `agreed()` asks; with several processes it is a collective (an all-reduce), so every process must ask at
    the same points of the loop. There is no truth value: an `if stop` would hide a collective."""

    def __init__(self, world: World, received: list[int]):
        self.world, self.received, self.signum = world, received, 0

    def agreed(self) -> bool:
        """Whether some process has received a stop signal; the largest signal number is left in `signum`.
        With several processes, a collective: every process calls it at the same point."""
        self.signum = self.world.max(self.received[0] if self.received else 0)
        return self.signum > 0

    def __bool__(self) -> bool:
        raise TypeError("AgreedStop has no truth value: call agreed() (a collective with several processes)")


def _env_int(name: str) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value)
    except ValueError:
        raise BlockswapError(f"environment variable {name}={value!r} is not a number; start several processes "
                             "with `torchrun --nproc-per-node N -m blockswap …`") from None


def env_size() -> int:
    """How many processes run this command (torchrun's WORLD_SIZE; 1 without torchrun): known before any
    process group exists, so that settings it refuses are refused before any work."""
    return _env_int("WORLD_SIZE") if "WORLD_SIZE" in os.environ else 1


def check_batch(batch_size: int) -> int:
    """The number of processes (`env_size`), once the global batch is known to split evenly among them."""
    processes = env_size()
    if batch_size % processes:
        raise BlockswapError(f"batch size {batch_size} does not divide among {processes} processes: it is the global "
                             f"batch, each process takes an equal part; use a multiple of {processes}")
    return processes


@contextlib.contextmanager
def joined(device: torch.device):
    """(World, device) of this process: the process group torchrun's environment describes, set up for the
    block and taken down after it; `SINGLE` and `device` unchanged without torchrun."""
    if env_size() == 1:
        yield SINGLE, device
        return
    missing = [name for name in ENV if name not in os.environ]
    if missing:
        raise BlockswapError(f"WORLD_SIZE is set but {', '.join(missing)} is not; start several processes with "
                             "`torchrun --nproc-per-node N -m blockswap …`")
    rank, size, local_rank = (_env_int(name) for name in ENV)
    local_size = _env_int("LOCAL_WORLD_SIZE") if "LOCAL_WORLD_SIZE" in os.environ else size
    if device.type == "cuda":
        if device.index is not None:
            raise BlockswapError(f"--device {device} names one GPU, but {size} processes run: leave --device auto "
                                 "or cuda, and each process takes the GPU of its LOCAL_RANK")
        if local_rank >= torch.cuda.device_count():
            raise BlockswapError(f"process {local_rank} on this machine has no GPU: {torch.cuda.device_count()} "
                                 f"visible for {local_size} processes; start one process per GPU")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    initialised_here = not dist.is_initialized()
    if initialised_here:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield World(rank, size, local_rank, local_size, device), device
    finally:
        if initialised_here:
            dist.destroy_process_group()


def is_main() -> bool:
    """Whether this process may print and write: rank 0, or the only process (also before and after the
    process group exists, hence torchrun's variable)."""
    return os.environ.get("RANK", "0") == "0"
