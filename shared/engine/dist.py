"""torchrun (env://) initialisation: gloo on CPU, nccl on GPU; rank 0 alone writes.

Evaluation under DDP, two ways (``Trainer.evaluate``):

* sharded (a task with ``evaluate_sharded = True``): every rank runs ``Task.evaluate`` on its own
  contiguous shard of the evaluation set (:func:`eval_loader`, :class:`ShardSampler`: no padding, no
  duplicate), the per-sample outputs are gathered in dataset order (:func:`gather_cat`), and the metric is
  computed from the whole set, so every rank finishes the evaluation together, ``world_size`` times sooner;
* rank 0 alone (the default): the other ranks wait for its metrics on a gloo group whose timeout is
  ``engine.eval_timeout_min`` (:func:`wait_group`), not inside an NCCL collective, whose watchdog would
  kill the job after NCCL's timeout (10 min by default) on a big set (ImageNet val, VisDA).

Both work with one process too (no process group): :func:`eval_loader` is then a plain sequential loader
and :func:`gather_cat` returns its input.
"""
from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import DeviceError


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main_process() -> bool:
    return rank() == 0


def init_distributed(device: str = "auto", timeout_min: float | None = None) -> torch.device:
    """Initialise the process group when launched by torchrun; return this rank's device."""
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise DeviceError(f"engine.device must be auto | cpu | cuda, got '{device}'")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"engine.device={device} but CUDA is not available on this machine "
                          f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); "
                          f"use engine.device=cpu or auto")
    want_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        if not dist.is_initialized():
            kw = {"timeout": timedelta(minutes=timeout_min)} if timeout_min else {}
            dist.init_process_group(backend="nccl" if want_cuda else "gloo", init_method="env://", **kw)
    if want_cuda:
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def broadcast_object(obj, group=None):
    """Rank 0's ``obj`` on every rank (over ``group``, default the whole world)."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, group=group)
    return box[0]


def wait_group(timeout_min: float):
    """A gloo group of every rank whose collectives wait up to ``timeout_min`` minutes (collective: call it
    on every rank, in the same order); None without a process group."""
    if world_size() == 1:
        return None
    return dist.new_group(backend="gloo", timeout=timedelta(minutes=timeout_min))


def shard_range(n: int, world: int | None = None, rank_: int | None = None) -> range:
    """This rank's contiguous part of ``range(n)``: sizes differ by at most one, nothing padded or repeated."""
    world = world_size() if world is None else world
    r = rank() if rank_ is None else rank_
    return range(r * n // world, (r + 1) * n // world)


class ShardSampler(Sampler):
    """Sequential indices of this rank's :func:`shard_range` (evaluation: concatenating the shards in rank
    order gives back the dataset order; unlike ``DistributedSampler`` no sample is repeated to even them)."""

    def __init__(self, dataset: Dataset, world: int | None = None, rank_: int | None = None):
        self.indices = shard_range(len(dataset), world, rank_)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def eval_loader(dataset: Dataset, batch_size: int, num_workers: int = 0, collate_fn=None,
                pin_memory: bool = False) -> DataLoader:
    """An evaluation / feature-extraction loader over this rank's shard, in order (all of it for one process)."""
    return DataLoader(dataset, batch_size=batch_size, sampler=ShardSampler(dataset), num_workers=num_workers,
                      collate_fn=collate_fn, pin_memory=pin_memory, persistent_workers=False)


def gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``t`` (``(n_r, ...)``, ``n_r`` may differ by rank) along dim 0 in rank order,
    on every rank; ``t`` itself for one process. Under NCCL the exchange goes through this rank's GPU."""
    if world_size() == 1:
        return t
    device = t.device
    if dist.get_backend() == "nccl" and device.type != "cuda":
        t = t.cuda()
    sizes = [torch.zeros(1, dtype=torch.long, device=t.device) for _ in range(world_size())]
    dist.all_gather(sizes, torch.tensor([t.shape[0]], dtype=torch.long, device=t.device))
    sizes = [int(s) for s in sizes]
    padded = t.new_zeros((max(sizes), *t.shape[1:]))
    padded[: t.shape[0]] = t
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:n] for p, n in zip(parts, sizes)]).to(device)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
