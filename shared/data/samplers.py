"""Sampling helpers: endless iteration, random source/target pairing per epoch, DDP-aware P x K."""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def endless(loader: Iterable) -> Iterator:
    """Cycle a loader forever, re-creating its iterator (so a shuffling sampler reshuffles)."""
    while True:
        yield from loader


def repeat_aug_sampler(dataset: Dataset, world_size: int, rank: int, num_repeats: int = 3) -> Sampler[int]:
    """DeiT's repeated augmentation (``RASampler``; timm ``RepeatAugSampler``): each chosen image ``num_repeats``
    times per epoch, the copies sent to different ranks, images per epoch rounded down to a multiple of 256.
    Below 256 images the rounding is off (timm >= 1.0.28 does this itself; older timm selected no image)."""
    from timm.data.distributed_sampler import RepeatAugSampler

    return RepeatAugSampler(dataset, num_replicas=world_size, rank=rank, num_repeats=num_repeats,
                            selected_round=256 if len(dataset) >= 256 else 0)


class RandomPairDataset(Dataset):
    """Item ``i`` = ``(a[pa[i]], b[pb[i]])`` for two datasets of unequal size.

    ``pa`` and ``pb`` are concatenated random permutations fixed by ``(seed, epoch)``, so every source
    and every target item is seen about equally often, the epoch is resumable and DDP-shardable (the
    engine shuffles indices ``i`` with its own per-epoch sampler). ``length`` defaults to the larger size.
    """

    def __init__(self, a: Dataset, b: Dataset, seed: int, epoch: int, length: int | None = None):
        self.a, self.b = a, b
        self.length = length or max(len(a), len(b))
        rng = np.random.default_rng([seed, epoch])
        self.pa = self._cover(rng, len(a))
        self.pb = self._cover(rng, len(b))

    def _cover(self, rng: np.random.Generator, n: int) -> np.ndarray:
        reps = math.ceil(self.length / n)
        return np.concatenate([rng.permutation(n) for _ in range(reps)])[: self.length]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        return self.a[int(self.pa[i])], self.b[int(self.pb[i])]


class IdentitySampler(Sampler[int]):
    """P identities x K instances per batch (ReID triplet sampling), DDP-aware.

    ``labels[i]`` is item i's identity. Each epoch draws, for every identity, its instances in chunks of
    K (re-sampling with replacement when it has fewer than K). Batches of P chunks are then formed:

    - ``distinct_ids=False``: the chunks are shuffled and cut into groups of P (an identity with many
      images may fill two places of one batch);
    - ``distinct_ids=True``: reid-strong-baseline / TransReID's ``RandomIdentitySampler``: each batch
      draws P different identities among those with chunks left and takes the next chunk of each; the
      epoch ends when fewer than P identities have chunks left.

    This rank gets every ``num_replicas``-th batch, so each rank's batch of P*K holds whole identities.
    """

    def __init__(self, labels: Sequence[int], batch_size: int, num_instances: int, seed: int = 0,
                 num_replicas: int = 1, rank: int = 0, distinct_ids: bool = False):
        if batch_size % num_instances:
            raise ValueError(f"batch_size {batch_size} must be a multiple of num_instances {num_instances}")
        self.k, self.p = num_instances, batch_size // num_instances
        self.seed, self.epoch = seed, 0
        self.num_replicas, self.rank = num_replicas, rank
        self.distinct_ids = distinct_ids
        self.index = defaultdict(list)
        for i, y in enumerate(labels):
            self.index[int(y)].append(i)
        self.pids = sorted(self.index)
        self._cache: tuple[int, list[list[list[int]]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[list[int]]]:
        """This epoch's batches (all ranks), each a list of P chunks of K indices."""
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        g = torch.Generator().manual_seed(self.seed * 10007 + self.epoch)
        per_pid = {}
        for pid in self.pids:
            idx = self.index[pid]
            if len(idx) < self.k:
                pick = [idx[j] for j in torch.randint(len(idx), (self.k,), generator=g).tolist()]
            else:
                pick = [idx[j] for j in torch.randperm(len(idx), generator=g).tolist()]
            per_pid[pid] = [pick[s:s + self.k] for s in range(0, len(pick) - self.k + 1, self.k)]
        if self.distinct_ids:
            batches, avail = [], [pid for pid in self.pids if per_pid[pid]]
            while len(avail) >= self.p:
                chosen = [avail[j] for j in torch.randperm(len(avail), generator=g)[: self.p].tolist()]
                batches.append([per_pid[pid].pop(0) for pid in chosen])
                avail = [pid for pid in avail if per_pid[pid]]
        else:
            chunks = [c for pid in self.pids for c in per_pid[pid]]
            chunks = [chunks[j] for j in torch.randperm(len(chunks), generator=g).tolist()]
            batches = [chunks[s:s + self.p] for s in range(0, len(chunks) - self.p + 1, self.p)]
        self._cache = (self.epoch, batches)
        return batches

    def __iter__(self) -> Iterator[int]:
        batches = self._batches()
        for b in range(len(batches) // self.num_replicas):
            for c in batches[b * self.num_replicas + self.rank]:
                yield from c

    def __len__(self) -> int:
        return (len(self._batches()) // self.num_replicas) * self.p * self.k
