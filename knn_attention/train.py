"""Train a dense or k-NN ViT/DeiT on ImageNet (DeiT recipe) or on the embedded cluttered digits.

    python -m knn_attention.train \
        --config knn_attention/configs/knn_deit-tiny_4xb256-300e_in1k.yaml data.root=/data/imagenet
    torchrun --nproc_per_node=4 -m knn_attention.train --config ...      # the paper's 4-GPU setting
"""
from __future__ import annotations

from dataclasses import dataclass, field

import timm
import torch
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from torch import nn

from shared.cli import train_main
from shared.engine import RunConfig, Task
from shared.engine.dist import eval_loader, gather_cat

from .data import DigitsWithMasks, epoch_chunk, imagenet_datasets
from .model import KNNAttention, set_topk
from .scoring import attention_stats, top1
from .spatial_reduction import knnify_spatial_reduction


@dataclass
class ModelConfig:
    arch: str = "deit_tiny_patch16_224"  # any timm VisionTransformer name, or a PVT-v2 / Twins name
    attention: str = "knn"  # dense | knn
    topk: int = 0  # absolute k per query (official DeiT: 100); 0 -> use topk_ratio
    topk_ratio: float = 0.5  # k = max(1, int(ratio * N_keys))
    impl: str = "fast"  # fast | threshold | scatter | gather (same math; see model.py)
    num_classes: int = 1000
    drop_path: float = 0.1
    # Architecture overrides for small models (None: the arch's own value).
    img_size: int | None = None
    patch_size: int | None = None
    in_chans: int | None = None
    embed_dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    global_pool: str = ""  # "" keeps the arch's own (DeiT: token); "avg" pools the patch tokens (miniature)
    stem: str = "patch"  # patch (the ViT's linear patch embedding) | conv (stem.ConvPatchEmbed, the miniature)
    init_weights: str = ""  # local dense/k-NN checkpoint (DeiT keys load unchanged)


@dataclass
class DataConfig:
    dataset: str = "imagenet"  # imagenet | cluttered_digits | distractor_digits (the k-NN miniature, data.py)
    root: str = ""
    img_size: int = 224
    crop_pct: float = 0.875
    auto_augment: str = "rand-m9-mstd0.5-inc1"
    color_jitter: float = 0.4
    reprob: float = 0.25
    remode: str = "pixel"
    interpolation: str = "bicubic"
    repeated_aug: int = 3  # DeiT --repeated-aug (3 copies); 1 = off
    mixup: float = 0.8
    cutmix: float = 1.0
    mixup_switch_prob: float = 0.5
    label_smoothing: float = 0.1
    eval_batch_size: int = 0  # 0: 1.5 x the per-rank train batch (DeiT)
    # cluttered_digits only
    n_train: int = 6000
    n_test: int = 1000
    data_seed: int = -1  # embedded data draw; -1: follow engine.seed (each seed its own draw)
    clutter: int = 4  # fragments of other digits per image (foundation default; distractor_digits: distractors)
    noise: float = 0.15  # Gaussian pixel noise (foundation default)
    digit_px: int = 14  # distractor_digits only: size of the evidence digit (px)
    distractor_gain: list[float] = field(default_factory=lambda: [0.4, 0.7])  # distractor_digits: brightness range
    epoch_samples: int = 0  # > 0: an engine epoch is this many samples (evaluate every N steps)
    attn_stats: bool = True


@dataclass
class KNNConfig(RunConfig):
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)


def build_model(m: ModelConfig) -> nn.Module:
    """A timm ViT (or PVT-v2 / Twins: top-k over the reduced keys) with dense or k-NN attention in every block."""
    if m.attention not in ("dense", "knn"):
        raise ValueError(f"model.attention must be dense | knn, got '{m.attention}'")
    over = {k: getattr(m, k) for k in ("img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads")
            if getattr(m, k) is not None}
    if m.global_pool:
        over["global_pool"] = m.global_pool
    if m.stem == "conv":
        from .stem import ConvPatchEmbed

        over["embed_layer"] = ConvPatchEmbed
    elif m.stem != "patch":
        raise ValueError(f"model.stem must be patch | conv, got '{m.stem}'")
    kw = dict(pretrained=False, num_classes=m.num_classes, drop_path_rate=m.drop_path, **over)
    topk = m.topk if m.topk > 0 else float(m.topk_ratio)
    if m.attention == "dense":
        model = timm.create_model(m.arch, **kw)
    elif m.arch.startswith(("pvt_v2", "twins")):
        # keys per stage depend on the input size (49 at 224 px); an absolute k too large for a stage
        # fails at the first forward with a one-line error naming k and the stage's key count
        model = set_topk(knnify_spatial_reduction(timm.create_model(m.arch, **kw)), topk, m.impl)
    else:
        model = timm.create_model(m.arch, attn_layer=KNNAttention, **kw)
        set_topk(model, topk, m.impl)
        n_keys = model.patch_embed.num_patches + model.num_prefix_tokens
        from .model import resolve_topk

        resolve_topk(topk, n_keys)  # fail now, not mid-run
    if m.init_weights:
        from shared.backbones import load_weights

        head = ("head.",) if m.num_classes != 1000 else ()  # a new head keeps its init; every other key is strict
        load_weights(model, m.init_weights, skip=head, allow_missing=head)
    return model


class KNNTask(Task):
    """Supervised classification; the attention type is the only difference between methods."""

    # under DDP every rank evaluates its shard of ImageNet val (the digits set is small: every rank scores all)
    evaluate_sharded = True

    def __init__(self, cfg: KNNConfig):
        self.cfg = cfg
        d = cfg.data
        if d.dataset in ("cluttered_digits", "distractor_digits"):
            data_seed = d.data_seed if d.data_seed >= 0 else cfg.engine.seed
            self.digits = DigitsWithMasks(d.n_train, d.n_test, data_seed, cfg.model.patch_size or 16,
                                          d.clutter, d.noise, generator=d.dataset, digit_px=d.digit_px,
                                          distractor_gain=tuple(d.distractor_gain))
            self.train_base = self.digits.train
            self.val = None
        elif d.dataset == "imagenet":
            if not d.root:
                raise ValueError("data.root: set the ImageNet folder (data.root=/data/imagenet)")
            self.train_base, self.val = imagenet_datasets(
                d.root, d.img_size, d.crop_pct, d.auto_augment, d.color_jitter, d.reprob, d.remode,
                d.interpolation)
        else:
            raise ValueError(f"data.dataset must be imagenet | cluttered_digits | distractor_digits, got '{d.dataset}'")
        self.mixup = None
        if d.mixup > 0 or d.cutmix > 0:
            self.mixup = Mixup(mixup_alpha=d.mixup, cutmix_alpha=d.cutmix, switch_prob=d.mixup_switch_prob,
                               label_smoothing=d.label_smoothing, num_classes=cfg.model.num_classes)
            self.criterion: nn.Module = SoftTargetCrossEntropy()
        elif d.label_smoothing > 0:
            self.criterion = LabelSmoothingCrossEntropy(d.label_smoothing)
        else:
            self.criterion = nn.CrossEntropyLoss()

    def build_model(self) -> nn.Module:
        return build_model(self.cfg.model)

    def param_groups(self, model: nn.Module) -> list[dict]:
        # DeiT (timm create_optimizer): no weight decay on 1-D params (norms, biases) and on
        # model.no_weight_decay() = {pos_embed, cls_token, dist_token} (Twins: its PosConv, PVT-v2: none).
        from timm.optim import param_groups_weight_decay

        return param_groups_weight_decay(model, self.cfg.optim.weight_decay, model.no_weight_decay())

    def train_dataset(self, epoch: int):
        d, seed = self.cfg.data, self.cfg.engine.seed
        if d.dataset != "imagenet":
            return epoch_chunk(self.train_base, epoch, d.epoch_samples, seed)
        return self.train_base

    def train_sampler(self, dataset, epoch: int, world_size: int, rank: int):
        """DeiT's ``--repeated-aug`` (``RASampler``, timm ``RepeatAugSampler``): each chosen image
        ``repeated_aug`` times per epoch, the copies sent to different ranks; epoch-seeded as in DeiT."""
        if self.cfg.data.dataset != "imagenet" or self.cfg.data.repeated_aug <= 1:
            return None
        from shared.data.samplers import repeat_aug_sampler

        return repeat_aug_sampler(dataset, world_size, rank, self.cfg.data.repeated_aug)

    def training_step(self, model, batch, trainer):
        x, y = batch
        if self.mixup is not None:
            x, y = self.mixup(x, y)
        loss = self.criterion(model(x), y)
        return {"loss": loss}

    @torch.no_grad()
    def evaluate(self, model, trainer) -> dict[str, float]:
        device = trainer.device if trainer is not None else torch.device("cpu")
        d = self.cfg.data
        per_rank = self.cfg.engine.batch_size // (trainer.world_size if trainer is not None else 1)
        bs = d.eval_batch_size or int(1.5 * per_rank)
        if d.dataset != "imagenet":
            x, y = self.digits.test_x, self.digits.test_y
            logits = torch.cat([model(x[i:i + bs].to(device)).cpu() for i in range(0, len(x), bs)])
            out = {"top1": top1(logits, y)}
            if d.attn_stats:
                sub = slice(0, min(len(x), 256))  # a fixed subset keeps the stats cheap
                stats = attention_stats(model, x[sub].to(device), self.digits.test_patch_digit[sub].to(device))
                out["cls_digit_share"] = sum(stats["cls_digit_share"]) / len(stats["cls_digit_share"])
                out["cls_digit_share_last"] = stats["cls_digit_share"][-1]
                out["digit_patch_frac"] = stats["digit_patch_frac"][0]
                out["attn_entropy"] = sum(stats["entropy"]) / len(stats["entropy"])
                out["key_distance"] = sum(stats["key_distance"]) / len(stats["key_distance"])
            return out
        correct, n = 0.0, 0
        for x, y in eval_loader(self.val, bs, self.cfg.engine.num_workers):
            logits = model(x.to(device, non_blocking=True))
            correct += float((logits.argmax(-1).cpu() == y).sum())
            n += len(y)
        correct, n = gather_cat(torch.tensor([[correct, n]], dtype=torch.float64)).sum(0).tolist()
        return {"top1": 100.0 * correct / max(1, n)}


def main(argv=None):
    return train_main("python -m knn_attention.train", __doc__, KNNConfig, lambda cfg, run_dir: KNNTask(cfg), argv)


if __name__ == "__main__":
    main()
