"""torch.distributed plumbing for the engine (torchrun + DistributedDataParallel).

Semantics: SOLVER.BATCH_SIZE and SOLVER.LR are global. Each of the WORLD_SIZE processes takes
BATCH_SIZE / WORLD_SIZE samples per step and DDP averages gradients, so a run on N devices
follows the same optimisation trajectory as one device with the full batch (up to BatchNorm,
whose batch statistics stay per process unless EXT.SYNC_BN). Before each evaluation the
processes' running statistics are averaged (``average_buffers_``), so that every process
evaluates, and rank 0 saves, one and the same model. Only rank 0 writes the run directory.
"""
import os
from typing import Iterable, List, NamedTuple

import torch
import torch.distributed as dist


class DistInfo(NamedTuple):
    rank: int
    world_size: int
    local_rank: int

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistInfo(0, 1, 0)


def init_from_env(use_cuda: bool) -> DistInfo:
    """Join the process group torchrun describes in the environment; a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def current() -> DistInfo:
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return SINGLE


def all_reduce_mean_(tensors: List[torch.Tensor]) -> List[torch.Tensor]:
    """Average tensors over the process group, in place (one flat all-reduce)."""
    if not tensors:
        return tensors
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset:offset + n].view_as(t))
        offset += n
    return tensors


def average_buffers_(buffers: Iterable[torch.Tensor]) -> None:
    """Average floating-point buffers (BatchNorm's running mean and variance) over the processes.

    Each process updates them from its own shard of every batch, and with the align trainer every
    forward runs under ``no_sync()``, so DDP's broadcast never reaches them: without this, N
    processes would evaluate N different models while rank 0 saves only its own. Integer buffers
    (``num_batches_tracked``) count the same steps everywhere and are left alone."""
    if not current().enabled:
        return
    all_reduce_mean_([b for b in buffers if b.is_floating_point()])


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if current().enabled:
        dist.all_reduce(t)
    return t


def barrier() -> None:
    if current().enabled:
        dist.barrier()


def shutdown() -> None:
    """Leave the process group together: every process reaches the barrier, then destroys its group.

    A process that exits with its gloo group alive leaves gloo's worker threads holding tensors that
    the interpreter's finalisation then frees without the GIL: that process dies with SIGABRT after
    its run has finished (seen on rank 1 at the end of a resumed torchrun run)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
