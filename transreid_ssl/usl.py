"""Unsupervised (USL) and domain-adaptive (UDA) ReID fine-tuning: cluster contrast, as the official
``cluster-contrast-reid/`` of TransReID-SSL (``examples/cluster_contrast_train_usl.py``, spec "USL"/"UDA").

Every epoch, on the unlabelled (target) training set:

1. eval-mode features ``L2norm(BN(CLS))`` with the test transform;
2. :func:`jaccard_distance` -- k-reciprocal encoding (Zhong et al. 2017) as ``compute_jaccard_distance``
   (k1 30, k2 6), with an exact torch kNN instead of faiss;
3. DBSCAN on the precomputed distance (scikit-learn, ``eps`` per dataset, ``min_samples`` 4); outliers
   (label -1) leave the epoch's training set;
4. :class:`ClusterMemory` initialised from the renormalised cluster means;
5. ``iters`` batches from :class:`MultiGallerySampler` (``RandomMultipleGallerySampler`` + ``IterLoader``),
   loss ``CE(x M^T / temp)``, and after each step the "hard" memory update: per cluster in the batch, the
   instance least similar to its memory entry, ``M_c <- m M_c + (1 - m) x``, renormalised.

UDA is the same loop on the target set, started from a source-supervised checkpoint whose classifier and
BN-neck are dropped (:func:`load_uda_init`, the official ``load_param``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Sampler

from shared.backbones import LoadReport, load_weights, strip_prefix

from .checkpoints import read_checkpoint
from .data import ReIDSplit


@dataclass
class USLConfig:
    """Cluster-contrast settings (official ``market_usl.sh`` / ``msmt_usl.sh``)."""

    k1: int = 30
    k2: int = 6
    eps: float = 0.6  # DBSCAN radius: 0.6 Market (and ->Market UDA), 0.7 MSMT17
    min_samples: int = 4
    temp: float = 0.05
    momentum: float = 0.2  # memory: M <- m M + (1 - m) x
    memory_update: str = "hard"  # hard (the least similar instance per cluster, official --use-hard) | all
    num_instances: int = 8  # per pseudo identity in a batch (RandomMultipleGallerySampler)
    iters: int = 200  # batches per epoch (IterLoader length)
    init_checkpoint: str = ""  # UDA: source-supervised transformer_120.pth or our reid last.pt


# ----------------------------------------------------------------------------- k-reciprocal Jaccard distance
def knn_rank(features: torch.Tensor, k: int, chunk: int = 4096) -> np.ndarray:
    """``(N, k)`` indices of the k nearest rows by Euclidean distance, nearest first (self included), as
    faiss ``IndexFlatL2.search``; computed in row chunks so no second ``N x N`` matrix is kept."""
    f = features.float()
    sq = (f * f).sum(1)
    out = []
    for s in range(0, len(f), chunk):
        d = sq[s:s + chunk, None] + sq[None] - 2 * f[s:s + chunk] @ f.t()
        out.append(torch.topk(d, min(k, len(f)), dim=1, largest=False, sorted=True).indices)
    return torch.cat(out).numpy()


def k_reciprocal_neighbours(initial_rank: np.ndarray, i: int, k: int) -> np.ndarray:
    """Indices among the first ``k + 1`` neighbours of ``i`` that also have ``i`` among their first ``k + 1``."""
    forward = initial_rank[i, :k + 1]
    backward = initial_rank[forward, :k + 1]
    return forward[np.where(backward == i)[0]]


def jaccard_distance(features: torch.Tensor, k1: int = 30, k2: int = 6) -> np.ndarray:
    """``compute_jaccard_distance``: ``(N, D)`` L2-normalised features -> ``(N, N)`` float32 in [0, 1].

    ``V[i]`` spreads ``softmax(-(2 - 2 f_i . f_j))`` over the k-reciprocal set of ``i`` expanded by the
    k1/2-reciprocal sets of its members that share more than 2/3 of themselves with it; with ``k2 > 1`` each
    row becomes the mean of its k2 nearest rows (query expansion); ``d_J(i, j) = 1 - s / (2 - s)`` with
    ``s = sum_k min(V_ik, V_jk)``. The kNN lists have k1 entries (faiss ``search(..., k1)``), so the
    ``[:k1 + 1]`` slices of the official code see k1 columns.
    """
    n = features.shape[0]
    initial_rank = knn_rank(features, k1)
    half = int(np.around(k1 / 2))
    nn_k1 = [k_reciprocal_neighbours(initial_rank, i, k1) for i in range(n)]
    nn_half = [k_reciprocal_neighbours(initial_rank, i, half) for i in range(n)]
    v = np.zeros((n, n), dtype=np.float32)
    f = features.float()
    for i in range(n):
        base = nn_k1[i]
        expansion = base
        for cand in base:
            cand_set = nn_half[cand]
            if len(np.intersect1d(cand_set, base)) > 2 / 3 * len(cand_set):
                expansion = np.append(expansion, cand_set)
        expansion = np.unique(expansion)
        dist = 2 - 2 * (f[i:i + 1] @ f[expansion].t())
        v[i, expansion] = F.softmax(-dist, dim=1).view(-1).numpy()
    if k2 != 1:
        v = np.stack([v[initial_rank[i, :k2]].mean(0) for i in range(n)]).astype(np.float32)
    inv_index = [np.where(v[:, i] != 0)[0] for i in range(n)]
    jac = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        temp_min = np.zeros(n, dtype=np.float32)
        for j in np.where(v[i] != 0)[0]:
            rows = inv_index[j]
            temp_min[rows] += np.minimum(v[i, j], v[rows, j])
        jac[i] = 1 - temp_min / (2 - temp_min)
    jac[jac < 0] = 0.0
    return jac


def dbscan_labels(dist: np.ndarray, eps: float, min_samples: int = 4) -> np.ndarray:
    """scikit-learn ``DBSCAN(metric='precomputed')`` labels ``(N,)``; -1 marks outliers (dropped)."""
    from sklearn.cluster import DBSCAN

    return DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed", n_jobs=-1).fit_predict(dist)


def cluster_centres(features: torch.Tensor, labels: np.ndarray) -> torch.Tensor:
    """``(C, D)`` L2-normalised means of each cluster, in label order; outliers ignored."""
    lab = torch.as_tensor(labels)
    keep = lab >= 0
    c = int(lab.max()) + 1 if keep.any() else 0
    sums = torch.zeros(c, features.shape[1]).index_add_(0, lab[keep], features[keep].float())
    counts = torch.bincount(lab[keep], minlength=c).clamp_min(1)[:, None]
    return F.normalize(sums / counts, dim=1)


# ----------------------------------------------------------------------------- memory
class ClusterMemory:
    """``ClusterMemory`` of ``clustercontrast/models/cm.py``: the loss and the momentum update.

    ``features (C, D)`` unit rows. :meth:`loss` is ``CE(normalize(x) M^T / temp, y)``; the official code
    updates M in the backward of that product (after the loss was computed with the old M), which is what
    calling :meth:`update` after the step does.
    """

    def __init__(self, features: torch.Tensor, temp: float = 0.05, momentum: float = 0.2, mode: str = "hard"):
        if mode not in ("hard", "all"):
            raise ValueError(f"usl.memory_update must be 'hard' or 'all', got {mode!r}")
        self.features, self.temp, self.momentum, self.mode = features.clone(), temp, momentum, mode

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = F.normalize(x, dim=1) @ self.features.to(x.device, x.dtype).t()
        return F.cross_entropy(logits / self.temp, y)

    @torch.no_grad()
    def update(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """``cm_hard``: per cluster of the batch, the instance with the lowest dot product with ``M_c``;
        ``cm`` (``mode='all'``): every instance in batch order."""
        x, y, m = F.normalize(x.float().cpu(), dim=1), y.cpu(), self.momentum
        if self.mode == "all":
            pairs = list(zip(x, y.tolist()))
        else:
            pairs = []
            for c in dict.fromkeys(y.tolist()):  # clusters in order of first appearance
                members = x[y == c]
                pairs.append((members[int(torch.argmin(members @ self.features[c]))], c))
        for feat, c in pairs:
            self.features[c] = m * self.features[c] + (1 - m) * feat
            self.features[c] /= self.features[c].norm()


# ----------------------------------------------------------------------------- sampler
class MultiGallerySampler(Sampler):
    """``RandomMultipleGallerySampler`` read through ``IterLoader``: ``iters`` global batches per epoch.

    One pass: identities in random order; per identity one random anchor, then ``num_instances - 1`` more
    of its images from *other cameras* (with replacement when fewer), or from its other images when it has
    one camera; an identity with a single image contributes just that one. Passes are cut into whole
    batches (``drop_last``) and chained until ``iters`` batches. Rank ``r`` of ``w`` takes the ``r``-th slice of
    every global batch, so ``n`` ranks x ``B/n`` see the batches one process of ``B`` sees.
    """

    def __init__(self, pids: list[int], camids: list[int], num_instances: int, batch_size: int, iters: int,
                 seed: int = 0, num_replicas: int = 1, rank: int = 0):
        if batch_size % num_replicas:
            raise ValueError(f"batch size {batch_size} is not divisible by {num_replicas} processes")
        self.pids, self.camids = np.asarray(pids), np.asarray(camids)
        self.k, self.batch, self.iters, self.seed = num_instances, batch_size, iters, seed
        self.replicas, self.rank, self.epoch = num_replicas, rank, 0
        self.by_pid = {p: np.where(self.pids == p)[0] for p in np.unique(self.pids)}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _pass(self, rng: np.random.Generator) -> list[int]:
        out: list[int] = []
        keys = list(self.by_pid)
        for p in rng.permutation(len(keys)):
            index = self.by_pid[keys[p]]
            a = int(rng.choice(index))
            out.append(a)
            cams = self.camids[index]
            pool = np.where(cams != self.camids[a])[0]
            if not len(pool):
                pool = np.where(index != a)[0]
                if not len(pool):
                    continue
            pick = rng.choice(pool, size=self.k - 1, replace=len(pool) < self.k)
            out.extend(int(index[j]) for j in pick)
        return out

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        batches: list[list[int]] = []
        while len(batches) < self.iters:
            one = self._pass(rng)
            whole = len(one) // self.batch
            if whole == 0:
                raise ValueError(f"one sampler pass gives {len(one)} images, fewer than a batch of {self.batch}")
            batches += [one[b * self.batch:(b + 1) * self.batch] for b in range(whole)]
        per = self.batch // self.replicas
        return iter([i for b in batches[: self.iters] for i in b[self.rank * per:(self.rank + 1) * per]])

    def __len__(self) -> int:
        return self.iters * (self.batch // self.replicas)


# ----------------------------------------------------------------------------- model, transforms, loading
class USLModel(nn.Module):
    """Cluster-contrast ``TransReID``: ``base`` ViT -> CLS -> ``bottleneck`` BN (frozen zero bias) ->
    L2-normalised, the feature for clustering, training and test alike. ``(B, 3, H, W) -> (B, D)``."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.base = backbone
        self.bottleneck = nn.BatchNorm1d(backbone.embed_dim)
        self.bottleneck.bias.requires_grad_(False)
        nn.init.ones_(self.bottleneck.weight)
        nn.init.zeros_(self.bottleneck.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.bottleneck(self.base(x)), dim=1)


class ClusterRandomErasing:
    """Cluster-contrast ``RandomErasing`` (after Normalize): with probability ``p`` one rectangle of area
    U(0.02, 0.4) x image and aspect U(0.3, 1/0.3), filled per channel with ``mean``; 100 attempts."""

    def __init__(self, p: float = 0.5, mean=(0.485, 0.456, 0.406), sl: float = 0.02, sh: float = 0.4,
                 r1: float = 0.3):
        self.p, self.mean, self.sl, self.sh, self.r1 = p, mean, sl, sh, r1

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        import random

        if random.uniform(0, 1) >= self.p:
            return img
        for _ in range(100):
            area = img.shape[1] * img.shape[2] * random.uniform(self.sl, self.sh)
            aspect = random.uniform(self.r1, 1 / self.r1)
            h, w = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if w < img.shape[2] and h < img.shape[1]:
                y, x = random.randint(0, img.shape[1] - h), random.randint(0, img.shape[2] - w)
                for c in range(img.shape[0]):
                    img[c, y:y + h, x:x + w] = self.mean[c % len(self.mean)]
                return img
        return img


def usl_transforms(size: tuple[int, int], pad: int = 10):
    """(train, test) of ``get_train_loader`` / ``get_test_loader`` with ``--self-norm`` (Normalize .5/.5):
    bicubic resize; train adds flip .5, pad (official 10, for 256x128) + random crop, the cluster-contrast
    random erasing."""
    import torchvision.transforms as T

    norm = T.Normalize([0.5] * 3, [0.5] * 3)
    resize = T.Resize(size, interpolation=T.InterpolationMode.BICUBIC)
    train = T.Compose([resize, T.RandomHorizontalFlip(0.5), T.Pad(pad), T.RandomCrop(size), T.ToTensor(), norm,
                       ClusterRandomErasing(0.5)])
    return train, T.Compose([resize, T.ToTensor(), norm])


def load_uda_init(backbone: nn.Module, path: str | Path) -> LoadReport:
    """UDA start: a source-supervised checkpoint (official ``transformer_120.pth`` or our reid ``last.pt``)
    into the backbone. As the official ``load_param``: ``module.`` and ``base.`` stripped, ``fc.`` /
    ``classifier`` / ``bottleneck`` dropped (the BN-neck is re-initialised); every other key strict."""
    obj = read_checkpoint(path)
    sd = strip_prefix(obj["model"] if isinstance(obj.get("model"), dict) else obj.get("state_dict", obj))
    sd = {k.removeprefix("base."): v for k, v in sd.items()
          if not any(s in k for s in ("fc.", "classifier", "bottleneck", "head", "dist", "pre_logits"))}
    return load_weights(backbone, path, sd=sd)


def load_usl_checkpoint(model: USLModel, path: str | Path) -> LoadReport:
    """A released USL checkpoint ``{'state_dict': module.<flat ViT keys> + module.bottleneck.*, epoch,
    best_mAP}`` (or our ``last.pt``) into a :class:`USLModel`, strictly."""
    obj = read_checkpoint(path)
    if isinstance(obj.get("model"), dict):
        return load_weights(model, path, sd=strip_prefix(obj["model"]))
    sd = strip_prefix(obj.get("state_dict", obj))
    sd = {(k if k.startswith("bottleneck.") else f"base.{k}"): v for k, v in sd.items()}
    return load_weights(model, path, sd=sd)


def pseudo_label_ari(labels: np.ndarray, pids) -> float:
    """Adjusted Rand index of the clustered images' pseudo labels against their identities (outliers left
    out; 0.0 when nothing is clustered): a diagnostic of the clustering, never used for training."""
    from sklearn.metrics import adjusted_rand_score

    keep = np.asarray(labels) >= 0
    if not keep.any():
        return 0.0
    return float(adjusted_rand_score(np.asarray(pids)[keep], np.asarray(labels)[keep]))


def pseudo_split(split: ReIDSplit, labels: np.ndarray) -> ReIDSplit:
    """The epoch's training set: every clustered image with its cluster as identity (outliers dropped)."""
    keep = np.where(labels >= 0)[0]
    return ReIDSplit([split.sources[i] for i in keep], [int(labels[i]) for i in keep],
                     [split.camids[i] for i in keep])
