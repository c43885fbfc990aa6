"""Data parallelism with ``torch.distributed`` under ``torchrun`` (gloo on CPU, nccl on GPU).

Every process draws its share of each global batch; gradients are summed across processes with
``all_reduce`` after the backward pass. Losses are normalised by the **global** batch size, so
the summed gradient equals the single-process gradient of the same global batch exactly (up to
float rounding), whatever the number of processes.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Process rank, world size and device of this process."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment (or run alone).

    Backend: nccl when CUDA is used, gloo otherwise.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    want_cuda = device == "cuda" or (device is None and torch.cuda.is_available() and world > 1)
    if world == 1:
        return DistInfo(device=torch.device(device or "cpu"))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if want_cuda else "gloo")
    dev = torch.device(f"cuda:{local_rank}") if want_cuda else torch.device("cpu")
    if want_cuda:
        torch.cuda.set_device(dev)
    log.info("process %d of %d on %s", rank, world, dev)
    return DistInfo(rank=rank, world_size=world, device=dev)


def shard(items: list[int], info: DistInfo) -> list[int]:
    """This process's share of a global batch (strided, so shares differ by at most one)."""
    return items[info.rank :: info.world_size]


def allreduce_gradients(model: torch.nn.Module, info: DistInfo) -> None:
    """Sum parameter gradients over processes (one flattened all-reduce; missing grads count as 0)."""
    if info.world_size == 1:
        return
    params = [p for p in model.parameters() if p.requires_grad]
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def allreduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over processes (returns it unchanged when alone)."""
    if info.world_size > 1:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def broadcast_parameters(model: torch.nn.Module, info: DistInfo) -> None:
    """Make every process start from rank 0's parameters."""
    if info.world_size > 1:
        for p in model.state_dict().values():
            dist.broadcast(p, src=0)


def exit_process(code: int = 0) -> None:
    """End a torchrun worker process without interpreter teardown.

    Under load, a gloo worker sometimes aborted during interpreter shutdown ("terminate called
    without an active exception") after all its work and files were done, which made torchrun
    report a failure. Flushing and ``os._exit`` skip the teardown that triggers it.
    """
    import logging as _logging
    import sys

    _logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def cleanup(info: DistInfo) -> None:
    """Leave the process group together: rank 0 may still be writing its final files, and a peer
    that tears down its gloo connections early can abort the others."""
    if info.world_size > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
