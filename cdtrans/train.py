"""Train CDTrans: Stage A ``stage=pretrain`` (source-only baseline), Stage B ``stage=uda`` (triple branch).

    python -m cdtrans.train --config cdtrans/configs/pretrain_deit-small_1xb64-10e_office31.yaml \\
        data.root=/data/office31 data.source=amazon data.target=webcam model.imagenet_init=/w/deit_small.pth
    python -m cdtrans.train --config cdtrans/configs/cdtrans_deit-small_1xb64-40e_office31.yaml \\
        data.root=/data/office31 data.source=amazon data.target=webcam model.init_checkpoint=runs/.../last.pt
    torchrun --nproc_per_node=2 -m cdtrans.train --config ...        # DDP
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from shared.cli import train_main
from shared.engine import RunConfig, Task, Trainer
from shared.engine.dist import eval_loader, gather_cat
from shared.metrics import mean_class_accuracy, top1_accuracy

from .data import Domains, PairDataset, build_domains
from .losses import pretrain_loss, uda_loss
from .model import CDTransModel, load_imagenet_init, load_official_checkpoint
from .pseudo_labels import PairSet, build_pairs, two_way_center_aware_pairs


@dataclass
class ModelConfig:
    arch: str = "vit_small_patch16_224"  # DeiT-S shape; vit_base_patch16_224 for DeiT-B
    drop_path_rate: float = 0.1
    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 0  # 0: the arch's own (set for the small embedded model)
    depth: int = 0
    num_heads: int = 0
    mlp_ratio: float = 0.0
    imagenet_init: str = ""  # Stage A: DeiT (distilled) or ViT ImageNet weights, a local file
    init_checkpoint: str = ""  # Stage B: Stage A's last.pt (official: the last epoch) or a released checkpoint


@dataclass
class DataConfig:
    name: str = "office31"  # digits | office31 | officehome | visda | domainnet
    root: str = ""
    source: str = "amazon"
    target: str = "webcam"
    eval_batch_size: int = 256
    seed: int = 0  # digits: generation seed
    n_source: int = 3000  # digits: rendered source images
    n_target: int = 0  # digits: handwritten target images drawn from data.seed (0: all 1,797)
    shift: int = 1  # digits: random shift augmentation (px)


@dataclass
class UDAConfig:
    update_every: int = 10  # pairs rebuilt at epochs 1, 11, 21, 31 (official update_epoch = 10)
    use_filter: bool = True  # WITH_PSEUDO_LABEL_FILTER
    fusion: bool = True  # False: self-training ablation (same pairs, no fusion branch / distillation)
    distill_weight: float = 1.0
    skip_empty_centres: bool = True  # False reproduces the official label collapse (see pseudo_labels.py)
    corrupt_pairs: float = 0.0  # ablation (label noise): share of pair pseudo labels replaced by wrong labels
    pair_noise: float = 0.0  # ablation (pair noise): share of pairs re-paired with a source of a wrong class


@dataclass
class CDTransConfig(RunConfig):
    stage: str = "pretrain"  # pretrain | uda
    label_smoothing: float = 0.1  # Stage A only; Stage B uses plain CE
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    uda: UDAConfig = field(default_factory=UDAConfig)


def build_model(cfg: CDTransConfig, num_classes: int) -> CDTransModel:
    m = cfg.model
    extra = {k: getattr(m, k) for k in ("embed_dim", "depth", "num_heads", "mlp_ratio") if getattr(m, k)}
    return CDTransModel(num_classes, m.arch, m.drop_path_rate, img_size=m.img_size, patch_size=m.patch_size,
                        in_chans=m.in_chans, **extra)


@torch.no_grad()
def extract(model: CDTransModel, dataset, batch_size: int, device: torch.device, num_workers: int = 0,
            sharded: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Target-branch (plain self-attention) BN-neck features and logits of a dataset, eval mode, in order.

    Returns ``(feat (N, D), logits (N, C))`` on the CPU in float32. ``sharded`` (every DDP rank must call
    it then): each rank extracts its shard and the whole set is gathered in order (shared.engine.dist).
    """
    was = model.training
    model.eval()
    feats, logits = [], []
    loader = (eval_loader(dataset, batch_size, num_workers) if sharded
              else DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers))
    for x, _, _ in loader:
        z, f, _ = model.forward_single(x.to(device))
        feats.append(f.float().cpu())
        logits.append(z.float().cpu())
    model.train(was)
    feats, logits = torch.cat(feats), torch.cat(logits)
    return (gather_cat(feats), gather_cat(logits)) if sharded else (feats, logits)


class _CDTransTask(Task):
    evaluate_sharded = True  # under DDP every rank evaluates its shard of the evaluation set (issue 24)

    def __init__(self, cfg: CDTransConfig, domains: Domains | None = None):
        self.cfg = cfg
        d = cfg.data
        self.domains = domains or build_domains(d.name, d.root, d.source, d.target, d.seed, d.n_source, d.shift,
                                                cfg.model.img_size, d.n_target)

    def build_model(self) -> nn.Module:
        return build_model(self.cfg, self.domains.num_classes)

    def evaluate(self, model, trainer: Trainer) -> dict[str, float]:
        """Target-branch accuracy on the target list (transductive, as the paper)."""
        _, logits = extract(model, self.domains.target_eval, self.cfg.data.eval_batch_size, trainer.device,
                            self.cfg.engine.num_workers, sharded=True)
        y = self.domains.target_labels
        mca, _ = mean_class_accuracy(logits, y, self.domains.num_classes)
        return {"acc": top1_accuracy(logits, y), "mean_class_acc": mca}


class PretrainTask(_CDTransTask):
    """Stage A: single-branch ViT on labelled source images (the paper's Baseline rows)."""

    def build_model(self) -> nn.Module:
        model = super().build_model()
        if self.cfg.model.imagenet_init:
            load_imagenet_init(model, self.cfg.model.imagenet_init)
        return model

    def train_dataset(self, epoch: int):
        return self.domains.source_train

    def training_step(self, model, batch, trainer):
        x, y, _ = batch
        return {"loss": pretrain_loss(model(x), y, self.cfg.label_smoothing)}


class UDATask(_CDTransTask):
    """Stage B: triple-branch training on two-way center-aware pairs, rebuilt every ``update_every`` epochs."""

    def __init__(self, cfg: CDTransConfig, domains: Domains | None = None):
        super().__init__(cfg, domains)
        self.pairs: PairSet | None = None
        self.pairs_epoch = -1
        self.pair_log: list[dict] = []

    def build_model(self) -> nn.Module:
        model = super().build_model()
        if not self.cfg.model.init_checkpoint:
            raise ValueError("model.init_checkpoint: Stage B starts from a Stage-A checkpoint (its last.pt)")
        load_official_checkpoint(model, self.cfg.model.init_checkpoint)
        return model

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        u = self.cfg.uda
        if epoch % u.update_every or self.pairs_epoch == epoch:
            return  # not a refresh epoch, or already refreshed before a mid-epoch resume
        model, dev, bs = trainer.model, trainer.device, self.cfg.data.eval_batch_size
        nw = self.cfg.engine.num_workers  # every rank runs this hook: each extracts its shard
        fs, _ = extract(model, self.domains.source_eval, bs, dev, nw, sharded=True)
        ft, zt = extract(model, self.domains.target_eval, bs, dev, nw, sharded=True)
        ys = self.domains.source_labels
        r = two_way_center_aware_pairs(fs, ft, zt, ys, min_pairs=self.cfg.engine.batch_size,
                                       use_filter=u.use_filter, skip_empty_centres=u.skip_empty_centres)
        pairs = r.pairs
        if u.corrupt_pairs > 0:
            pairs = corrupt(pairs, u.corrupt_pairs, self.domains.num_classes, seed=self.cfg.engine.seed + epoch)
        if u.pair_noise > 0:
            pairs = repair_wrong_class(pairs, u.pair_noise, ys, self.domains.target_labels,
                                       seed=self.cfg.engine.seed + epoch)
        self.pairs, self.pairs_epoch = pairs, epoch
        yt = self.domains.target_labels
        stats = {
            "epoch": epoch + 1, "pairs": len(pairs), "fell_back_unfiltered": r.fell_back,
            "precision_one_way": build_pairs(ys, r.pseudo, r.s2t, r.t2s, False, two_way=False).precision(yt),
            "precision_two_way": build_pairs(ys, r.pseudo, r.s2t, r.t2s, False).precision(yt),
            "precision_two_way_center_aware": build_pairs(ys, r.pseudo, r.s2t, r.t2s, True).precision(yt),
            "precision_used": pairs.precision(yt),
            "pseudo_label_acc": 100.0 * float((r.pseudo == yt).float().mean()),
        }
        self.pair_log.append(stats)
        trainer.log({"pair_refresh": stats})

    def train_dataset(self, epoch: int):
        return PairDataset(self.domains.source_train, self.domains.target_train, self.pairs)

    def training_step(self, model, batch, trainer):
        (xs, xt), (ys, yt), _ = batch
        u = self.cfg.uda
        return uda_loss(model(xs, xt, fusion=u.fusion), ys, yt, fusion=u.fusion, distill_weight=u.distill_weight)

    def state_dict(self) -> dict:
        if self.pairs is None:
            return {}
        return {"pairs": self.pairs.state(), "pairs_epoch": self.pairs_epoch}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.pairs = PairSet(**state["pairs"])
            self.pairs_epoch = int(state["pairs_epoch"])


def corrupt(pairs: PairSet, share: float, num_classes: int, seed: int) -> PairSet:
    """Replace ``share`` of the pairs' pseudo labels with random wrong classes (noise-robustness ablation)."""
    g = torch.Generator().manual_seed(seed)
    n = len(pairs)
    pick = torch.randperm(n, generator=g)[: int(round(share * n))]
    pseudo = pairs.pseudo_label.clone()
    pseudo[pick] = (pseudo[pick] + torch.randint(1, num_classes, (len(pick),), generator=g)) % num_classes
    return PairSet(pairs.source_idx, pairs.target_idx, pairs.source_label, pseudo)


def repair_wrong_class(pairs: PairSet, share: float, source_labels: torch.Tensor, target_labels: torch.Tensor,
                       seed: int) -> PairSet:
    """Pair noise: ``share`` of the pairs get a new source image of a class other than the target's *true*
    class, and the pseudo label becomes that source's label, as a wrong center-aware match does (the filter
    keeps only ``y_s == y^_t``). Unlike :func:`corrupt` the pair stays label-consistent; what is wrong is that
    source and target show different digits. The true target labels pick the wrong class (a simulation knob).

    The wrong class is uniform over the other classes, the source image uniform within it.
    """
    g = torch.Generator().manual_seed(seed)
    n, c = len(pairs), int(max(source_labels.max(), target_labels.max())) + 1
    pick = torch.randperm(n, generator=g)[: int(round(share * n))]
    wrong = (target_labels[pairs.target_idx[pick]] + torch.randint(1, c, (len(pick),), generator=g)) % c
    u = torch.rand(len(pick), generator=g)
    src, ys, pseudo = pairs.source_idx.clone(), pairs.source_label.clone(), pairs.pseudo_label.clone()
    for k in wrong.unique().tolist():
        members = torch.nonzero(source_labels == k).flatten()
        if not len(members):
            raise ValueError(f"pair noise: no source image of class {k} to re-pair with")
        m = wrong == k
        src[pick[m]] = members[(u[m] * len(members)).long().clamp(max=len(members) - 1)]
    ys[pick], pseudo[pick] = wrong, wrong
    return PairSet(src, pairs.target_idx.clone(), ys, pseudo)


def build_task(cfg: CDTransConfig, run_dir: Path | None = None, domains: Domains | None = None) -> Task:
    if cfg.stage == "pretrain":
        return PretrainTask(cfg, domains)
    if cfg.stage == "uda":
        return UDATask(cfg, domains)
    raise ValueError(f"stage: expected 'pretrain' or 'uda', got '{cfg.stage}'")


def main(argv: list[str] | None = None) -> dict:
    return train_main("python -m cdtrans.train", __doc__, CDTransConfig, build_task, argv)


if __name__ == "__main__":
    main()
