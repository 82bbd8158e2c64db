"""Train TransReID-SSL: ``stage=dino`` (self-supervised pre-training), ``stage=reid`` (supervised fine-tuning) or
``stage=usl`` (unsupervised, and with ``usl.init_checkpoint`` domain-adaptive, cluster-contrast fine-tuning).

    python -m transreid_ssl.train --config transreid_ssl/configs/dino_vit-small_8xb64-100e_luperson-cfs60.yaml \\
        data.root=/data/LUP data.filter_list=/data/CFS_list.pkl
    python -m transreid_ssl.train --config transreid_ssl/configs/transreid_vit-small_1xb64-120e_market1501.yaml \\
        data.root=/data model.pretrained=runs/dino/last.pt
    GPUS=8 bash transreid_ssl/scripts/dino_luperson.sh                       # torchrun DDP
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from shared.cli import train_main
from shared.data.samplers import IdentitySampler
from shared.dino import DINOConfig, DINOMultiCrop
from shared.dino import DINOTask as SharedDINOTask
from shared.engine import RunConfig, Task, Trainer
from shared.engine.dist import ShardSampler, gather_cat
from shared.metrics.reid import reid_evaluate

from .checkpoints import load_backbone
from .data import (
    ReIDDataset,
    ReIDSplit,
    luperson_images,
    market1501,
    mm,
    msmt17,
    read_ranking,
    reid_test_transform,
    reid_train_transform,
)
from .losses import reid_loss
from .model import ReIDModel, ReIDViT
from .usl import (
    ClusterMemory,
    MultiGallerySampler,
    USLConfig,
    USLModel,
    cluster_centres,
    dbscan_labels,
    jaccard_distance,
    load_uda_init,
    pseudo_label_ari,
    pseudo_split,
    usl_transforms,
)


@dataclass
class ModelConfig:
    img_size: list[int] = field(default_factory=lambda: [256, 128])
    patch_size: int = 16
    embed_dim: int = 384  # ViT-S; 768 / 12 heads for ViT-B
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.1
    stem: str = "patchify"  # patchify | ics (IBN conv stem) | ics_bn (ablation: BN instead of IBN)
    stem_hidden: int = 64
    stem_kernel: int = 7
    pretrained: str = ""  # reid: DINO checkpoint (raw, converted flat, or our dino last.pt)
    pretrain_hw_ratio: int = 2
    allow_random_stem: bool = False  # reid: a plain-ViT file into an ICS model (stem left at init)
    neck_feat: str = "before"  # test feature: pre-BN (the configs' NECK_FEAT) | after


@dataclass
class DataConfig:
    name: str = "market1501"  # reid: market1501 | msmt17 | mm | synperson;  dino: luperson | synperson
    root: str = ""
    pad: int = 10
    re_prob: float = 0.5
    num_instances: int = 4
    eval_batch_size: int = 256
    filter_list: str = ""  # dino: CFS ranking (official CFS_list.pkl or our text file), best first
    keep_num: int = 0  # dino: keep the first keep_num of filter_list (0: all); with subset=random, a random subset
    subset: str = "ranked"  # ranked (filter_list order) | random (control: keep_num images at random)
    subset_seed: int = 0
    # synperson generator (embedded default)
    seed: int = 0
    n_train_ids: int = 80
    n_test_ids: int = 80
    pool_size: int = 3000
    cam_strength: float = 0.5  # colour cast of the cameras (the UDA suite's source domain uses a stronger one)
    clutter: int = 0  # synperson: background rectangles per image (0: the plain per-camera background)
    background: str = "camera"  # synperson: camera (a fixed colour per camera, the spec) | shot (a scene per image)
    id_cues: str = "colour"  # synperson: colour (the spec) | shape (+ cues that survive colour jitter)


@dataclass
class TransReIDSSLConfig(RunConfig):
    stage: str = "reid"  # dino | reid | usl (UDA = usl with usl.init_checkpoint)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    dino: DINOConfig = field(default_factory=DINOConfig)
    usl: USLConfig = field(default_factory=USLConfig)


@lru_cache(maxsize=2)
def _synperson(seed: int, n_train: int, n_test: int, pool: int, h: int, w: int, cam_strength: float, clutter: int,
               background: str = "camera", id_cues: str = "colour"):
    from .synperson import make_synperson

    return make_synperson(seed, n_train, n_test, pool_size=pool, size=(h, w), cam_strength=cam_strength,
                          clutter=clutter, background=background, id_cues=id_cues)


def synperson_for(d: DataConfig, img_size) -> object:
    return _synperson(d.seed, d.n_train_ids, d.n_test_ids, d.pool_size, int(img_size[0]), int(img_size[1]),
                      d.cam_strength, d.clutter, d.background, d.id_cues)


def pool_name(i: int) -> str:
    """The name a SynPerson pool image has in rankings (and in ``LUP/images`` when written to disk)."""
    return f"{i:02d}_00_0000_{i:08d}.jpg"


def build_backbone(m: ModelConfig, drop_path_rate: float | None = None) -> ReIDViT:
    return ReIDViT(tuple(m.img_size), m.patch_size, m.embed_dim, m.depth, m.num_heads, m.mlp_ratio,
                   m.drop_path_rate if drop_path_rate is None else drop_path_rate, m.stem, m.stem_hidden,
                   m.stem_kernel)


@torch.no_grad()
def extract_features(net: nn.Module, split: ReIDSplit, size, batch_size: int, device, transform=None,
                     num_workers: int = 0, sharded: bool = False) -> torch.Tensor:
    """Eval-mode features (N, D) in order, with the test transform (no augmentation). ``sharded`` (every DDP
    rank must call it then): each rank extracts its shard, the whole set is gathered in order."""
    was = net.training
    net.eval()
    # its own generator: a DataLoader draws its base seed from the global RNG otherwise, and the clustering of
    # USL runs this at epoch start, where a resumed run has not restored the RNG state yet
    ds = ReIDDataset(split, transform or reid_test_transform(tuple(size)))
    loader = DataLoader(ds, batch_size=batch_size, sampler=ShardSampler(ds) if sharded else None, shuffle=False,
                        num_workers=num_workers, generator=torch.Generator())
    feats = [net(x.to(device)).float().cpu() for x, *_ in loader]
    net.train(was)
    return gather_cat(torch.cat(feats)) if sharded else torch.cat(feats)


def reid_metrics(net: nn.Module, query: ReIDSplit, gallery: ReIDSplit, size, batch_size: int, device,
                 transform=None, num_workers: int = 0, sharded: bool = False) -> dict:
    """Market protocol on L2-normalised test features (squared Euclidean), percentages."""
    gf = F.normalize(extract_features(net, gallery, size, batch_size, device, transform, num_workers, sharded), dim=1)
    return query_metrics(net, query, gallery, gf, size, batch_size, device, transform, num_workers, sharded)


def query_metrics(net: nn.Module, query: ReIDSplit, gallery: ReIDSplit, gallery_feats: torch.Tensor, size,
                  batch_size: int, device, transform=None, num_workers: int = 0, sharded: bool = False) -> dict:
    """:func:`reid_metrics` with the gallery's normalised features already extracted (several query sets)."""
    qf = F.normalize(extract_features(net, query, size, batch_size, device, transform, num_workers, sharded), dim=1)
    r = reid_evaluate(qf, gallery_feats, query.pids, gallery.pids, query.camids, gallery.camids)
    return {"mAP": r["mAP"], "rank1": r["rank1"], "rank5": r["rank5"], "rank10": r["rank10"], "mINP": r["mINP"]}


def reid_splits(d: DataConfig, size, stage: str) -> tuple[ReIDSplit, ReIDSplit, ReIDSplit]:
    """(train, query, gallery) of a ReID dataset; USL ignores the train identities."""
    if d.name == "synperson":
        s = synperson_for(d, size)
        return s.train, s.query, s.gallery
    loaders = {"market1501": market1501, "msmt17": msmt17, "mm": mm}
    if d.name not in loaders:
        raise ValueError(f"data.name: the {stage} stage takes {' | '.join(loaders)} | synperson, got {d.name!r}")
    return loaders[d.name](d.root)


class ReIDTask(Task):
    """Supervised fine-tuning (``transreid_pytorch/train.py``): PK batches, CE + soft triplet, Market eval."""

    evaluate_sharded = True  # under DDP every rank evaluates its shard of the evaluation set (issue 24)

    def __init__(self, cfg: TransReIDSSLConfig):
        self.cfg = cfg
        d, size = cfg.data, cfg.model.img_size
        self.train_split, self.query, self.gallery = reid_splits(d, size, cfg.stage)
        # SynPerson: also the test ids under a held-out camera with a colour cast no training camera has
        self.heldout = synperson_for(d, size).heldout_query if d.name == "synperson" else None
        self.dataset = ReIDDataset(self.train_split, reid_train_transform(tuple(size), d.pad, d.re_prob))

    def build_model(self) -> nn.Module:
        m = self.cfg.model
        backbone = build_backbone(m)
        if m.pretrained:
            load_backbone(backbone, m.pretrained, m.pretrain_hw_ratio, m.allow_random_stem)
        return ReIDModel(backbone, self.train_split.num_pids, m.neck_feat)

    def train_dataset(self, epoch: int):
        return self.dataset

    def train_sampler(self, dataset, epoch, world_size, rank):
        e = self.cfg.engine
        return IdentitySampler(self.train_split.pids, e.batch_size // world_size, self.cfg.data.num_instances,
                               seed=e.seed, num_replicas=world_size, rank=rank, distinct_ids=True)

    def training_step(self, model, batch, trainer):
        x, pid, _, _ = batch
        logits, feat = model(x)
        return reid_loss(logits, feat, pid)

    def evaluate(self, model, trainer: Trainer) -> dict[str, float]:
        size, bs, dev = self.cfg.model.img_size, self.cfg.data.eval_batch_size, trainer.device
        nw = self.cfg.engine.num_workers
        # once for both query sets
        gf = F.normalize(extract_features(model, self.gallery, size, bs, dev, None, nw, sharded=True), dim=1)
        out = query_metrics(model, self.query, self.gallery, gf, size, bs, dev, None, nw, sharded=True)
        if self.heldout is not None:
            held = query_metrics(model, self.heldout, self.gallery, gf, size, bs, dev, None, nw, sharded=True)
            out |= {"heldout_mAP": held["mAP"], "heldout_rank1": held["rank1"]}
        return out


class USLTask(Task):
    """USL / UDA by cluster contrast (:mod:`transreid_ssl.usl`): the train identities are never read."""

    evaluate_sharded = True  # under DDP every rank evaluates its shard of the evaluation set (issue 24)

    def __init__(self, cfg: TransReIDSSLConfig):
        self.cfg = cfg
        self.train_split, self.query, self.gallery = reid_splits(cfg.data, cfg.model.img_size, cfg.stage)
        self.train_tf, self.test_tf = usl_transforms(tuple(cfg.model.img_size), cfg.data.pad)
        self.labels: np.ndarray | None = None
        self.labels_epoch = -1
        self.memory: ClusterMemory | None = None
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None

    def build_model(self) -> nn.Module:
        m, u = self.cfg.model, self.cfg.usl
        backbone = build_backbone(m)
        if u.init_checkpoint:  # UDA: the source-supervised model, classifier and BN-neck dropped
            load_uda_init(backbone, u.init_checkpoint)
        elif m.pretrained:  # USL: the DINO weights
            load_backbone(backbone, m.pretrained, m.pretrain_hw_ratio, m.allow_random_stem)
        return USLModel(backbone)

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        u = self.cfg.usl
        if self.labels_epoch == epoch:  # restored mid-epoch: keep the clusters that epoch was trained on
            return
        feats = extract_features(trainer.model, self.train_split, self.cfg.model.img_size,  # on every rank
                                 self.cfg.data.eval_batch_size, trainer.device, self.test_tf,
                                 self.cfg.engine.num_workers, sharded=True)
        self.labels = dbscan_labels(jaccard_distance(feats, u.k1, u.k2), u.eps, u.min_samples)
        n_clusters = int(self.labels.max()) + 1
        if n_clusters < 2:
            raise ValueError(f"usl: DBSCAN found {n_clusters} cluster(s) at epoch {epoch + 1} (usl.eps={u.eps}); "
                             "nothing to train on: check the initial weights or the eps")
        self.memory = ClusterMemory(cluster_centres(feats, self.labels), u.temp, u.momentum, u.memory_update)
        self.labels_epoch = epoch
        outliers = int((self.labels < 0).sum())
        # diagnostics only (never trained on): agreement of the clustered images' pseudo labels with the identities
        agree = pseudo_label_ari(self.labels, self.train_split.pids)
        trainer.log({"epoch": epoch + 1, "clusters": n_clusters, "outliers": outliers, "pseudo_ari": agree})
        if trainer.is_main:
            print(f"epoch {epoch + 1}: {n_clusters} clusters, {outliers} outliers of {len(self.labels)} images, "
                  f"ARI to the identities {agree:.3f}")

    def train_dataset(self, epoch: int):
        return ReIDDataset(pseudo_split(self.train_split, self.labels), self.train_tf)

    def train_sampler(self, dataset, epoch, world_size, rank):
        e, u = self.cfg.engine, self.cfg.usl
        return MultiGallerySampler(dataset.split.pids, dataset.split.camids, u.num_instances, e.batch_size, u.iters,
                                   seed=e.seed, num_replicas=world_size, rank=rank)

    def training_step(self, model, batch, trainer):
        x, y, _, _ = batch
        feat = model(x)
        self._pending = (feat.detach(), y)
        return {"loss": self.memory.loss(feat, y)}

    def on_step_end(self, trainer: Trainer, global_step: int) -> None:
        feat, y = self._pending
        if torch.distributed.is_available() and torch.distributed.is_initialized():  # one memory, the global batch
            feat, y = (torch.cat(_all_gather(t)) for t in (feat, y))
        self.memory.update(feat, y)

    def evaluate(self, model, trainer: Trainer) -> dict[str, float]:
        return reid_metrics(model, self.query, self.gallery, self.cfg.model.img_size, self.cfg.data.eval_batch_size,
                            trainer.device, self.test_tf, self.cfg.engine.num_workers, sharded=True)

    def state_dict(self) -> dict:
        if self.memory is None:
            return {}
        return {"epoch": self.labels_epoch, "labels": torch.as_tensor(self.labels), "memory": self.memory.features}

    def load_state_dict(self, state: dict) -> None:
        if state:
            u = self.cfg.usl
            self.labels_epoch, self.labels = int(state["epoch"]), state["labels"].numpy()
            self.memory = ClusterMemory(state["memory"], u.temp, u.momentum, u.memory_update)


def _all_gather(t: torch.Tensor) -> list[torch.Tensor]:
    out = [torch.empty_like(t) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(out, t.contiguous())
    return out


class DINOTask(SharedDINOTask):
    """DINO pre-training (``dino/main_dino.py``, :class:`shared.dino.DINOTask`) on LUPerson, a CFS-ranked
    subset, or the SynPerson pool; person-shaped crops (global = ``model.img_size``, local = ``dino.local_size``);
    SyncBN in the conv stem under DDP as the official ICS runs."""

    def __init__(self, cfg: TransReIDSSLConfig):
        d, g = cfg.data, cfg.dino
        if d.subset not in ("ranked", "random"):
            raise ValueError(f"data.subset must be 'ranked' or 'random', got {d.subset!r}")
        if d.name == "synperson":
            pool = synperson_for(d, cfg.model.img_size).pool
            if d.filter_list and d.subset == "ranked":
                index = {pool_name(i): i for i in range(len(pool))}
                names = read_ranking(d.filter_list)[: d.keep_num or None]
                keep = [index[n] for n in names]
            else:
                keep = list(range(len(pool)))
            split = ReIDSplit([pool.sources[i] for i in keep], [0] * len(keep), [0] * len(keep))
        elif d.name == "luperson":
            split = luperson_images(d.root, d.filter_list if d.subset == "ranked" else None, d.keep_num)
        else:
            raise ValueError(f"data.name: dino stage takes luperson | synperson, got {d.name!r}")
        if d.subset == "random" and d.keep_num:
            pick = np.random.default_rng(d.subset_seed).permutation(len(split))[: d.keep_num]
            split = ReIDSplit([split.sources[i] for i in sorted(pick)], [0] * len(pick), [0] * len(pick))
        self.split = split
        dataset = ReIDDataset(split, DINOMultiCrop.from_config(g, cfg.model.img_size))
        super().__init__(cfg, dataset, lambda dpr: build_backbone(cfg.model, dpr), cfg.model.drop_path_rate,
                         sync_bn=cfg.model.stem != "patchify")


def build_task(cfg: TransReIDSSLConfig, run_dir: Path | None = None) -> Task:
    if cfg.stage == "dino":
        return DINOTask(cfg)
    if cfg.stage == "reid":
        return ReIDTask(cfg)
    if cfg.stage == "usl":
        return USLTask(cfg)
    raise ValueError(f"stage: expected 'dino', 'reid' or 'usl', got '{cfg.stage}'")


def main(argv: list[str] | None = None) -> dict:
    return train_main("python -m transreid_ssl.train", __doc__, TransReIDSSLConfig, build_task, argv)


if __name__ == "__main__":
    main()
