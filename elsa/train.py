"""Train ELSA-Swin (or the Swin / plain local self-attention baselines) or ELSA-VOLO (or VOLO; with VOLO's
token labelling, ``train.token_label``) on ImageNet-1k or the embedded digits, on the shared engine.

    python -m elsa.train --config elsa/configs/elsa_swin-tiny_8xb128-310e_in1k.yaml data.root=/data/imagenet
    torchrun --nproc_per_node=8 -m elsa.train --config ...                               # DDP
    python -m elsa.train --config elsa/configs/elsa_swin-micro-p2_1xb64-2e_cluttered-digits.yaml
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader

from shared.cli import train_main
from shared.engine import RunConfig, Task, Trainer
from shared.engine.dist import eval_loader, gather_cat
from shared.metrics import top1_accuracy

from .checkpoint import load_official_checkpoint
from .data import DataConfig, build_datasets, token_label_train_set
from .model import elsa_swin
from .token_label import TokenLabelConfig, TokenLabelLoss, soft_target_ce, token_label_targets
from .volo import ElsaVOLO, TokenLabelVOLO, load_run_weights, set_outlook_kernel

MIXERS = {"swin": ("elsa", "lsa", "swin"), "volo": ("elsa", "lsa", "outlook")}


@dataclass
class ModelConfig:
    # swin: ELSA-Swin (token mixer of stages 0..n-2; the last stage always keeps Swin window attention, as
    # released). volo: ELSA-VOLO (the mixer replaces VOLO's Outlooker stage; ``outlook`` = timm's VOLO).
    family: str = "swin"  # swin | volo
    mixer: str = "elsa"  # swin family: elsa | lsa | swin; volo family: elsa | lsa | outlook
    img_size: int = 224
    in_chans: int = 3
    patch_size: int = 4
    window_size: int = 7
    embed_dim: int = 96
    depths: list[int] = field(default_factory=lambda: [2, 2, 6, 2])
    num_heads: list[int] = field(default_factory=lambda: [3, 6, 12, 24])
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.1
    elsa_kernel: int = 7
    outlook_kernel: int = 3  # volo family, mixer outlook: VOLO's outlook-attention kernel (timm fixes 3)
    group_width: int = 4  # 4 for Tiny, 8 for Small/Base (official model functions)
    lam: float = 0.0  # released Swin weights: additive ghost only
    gamma: float = 1.0
    impl: str = "auto"  # aggregation form: auto | tiled | shift | unfold (same output)
    tile: int = 7
    ghost_on_lsa: bool = False  # ablations: the lsa mixer gets ELSA's ghost head with lam/gamma too
    # volo family (depths = VOLO's layers, num_heads per stage): widths per stage, stem, downsampling,
    # class-attention post layers; qkv_bias: None = the family's default (Swin True, VOLO False)
    embed_dims: list[int] = field(default_factory=lambda: [192, 384, 384, 384])
    stem_hidden_dim: int = 64
    downsamples: list[bool] = field(default_factory=lambda: [True, False, False, False])
    post_layers: list[str] = field(default_factory=lambda: ["ca", "ca"])
    qkv_bias: bool | None = None
    # swin: a released ELSA-Swin file (official layout), loaded strictly; volo: one of our runs' last.pt/best.pt
    # (fine-tuning at a higher resolution: the position embedding is resampled)
    init_checkpoint: str = ""
    init_use_ema: bool = False  # take its state_dict_ema (ELSA-Swin-B)


@dataclass
class ElsaConfig(RunConfig):
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TokenLabelConfig = field(default_factory=TokenLabelConfig)  # VOLO's token labelling (elsa.token_label)


def build_model(m: ModelConfig, num_classes: int, token_label: TokenLabelConfig | None = None) -> nn.Module:
    """The model a config describes (ELSA-Swin, LSA-Swin, timm Swin; ELSA-VOLO, LSA-VOLO, timm VOLO).
    ``token_label`` with ``token_label: true``: a VOLO-family model whose training forward returns the dense
    outputs (``elsa.volo.TokenLabelForward``)."""
    if m.family not in MIXERS:
        raise ValueError(f"model.family must be one of {tuple(MIXERS)}, got '{m.family}'")
    if m.mixer not in MIXERS[m.family]:
        raise ValueError(f"model.mixer must be one of {MIXERS[m.family]} for model.family={m.family}, got '{m.mixer}'")
    if len(m.depths) != len(m.num_heads):
        raise ValueError(f"model.depths {m.depths} and model.num_heads {m.num_heads} differ in length")
    dense = token_label is not None and token_label.token_label
    check_token_label_family(m, dense)
    if m.family == "volo":
        model = build_volo(m, num_classes, dense)
        if dense:
            model.token_label_train, model.mix_token = True, token_label.mix_token
        return model
    common = dict(img_size=m.img_size, in_chans=m.in_chans, patch_size=m.patch_size, window_size=m.window_size,
                  embed_dim=m.embed_dim, depths=tuple(m.depths), num_heads=tuple(m.num_heads),
                  mlp_ratio=m.mlp_ratio, drop_path_rate=m.drop_path_rate, num_classes=num_classes,
                  qkv_bias=True if m.qkv_bias is None else m.qkv_bias)
    stages = () if m.mixer == "swin" else None  # None: every stage but the last
    model = elsa_swin(elsa_kernel=m.elsa_kernel, group_width=m.group_width, lam=m.lam, gamma=m.gamma,
                      elsa_stages=stages, attn_type="elsa" if m.mixer == "swin" else m.mixer, impl=m.impl,
                      tile=m.tile, ghost_on_lsa=m.ghost_on_lsa, **common)
    if m.init_checkpoint:
        load_official_checkpoint(model, m.init_checkpoint, use_ema=m.init_use_ema)
    return model


def check_token_label_family(m: ModelConfig, token_label: bool) -> None:
    if token_label and m.family != "volo":
        raise ValueError("train.token_label needs model.family=volo (VOLO's aux head gives the token outputs)")


def build_volo(m: ModelConfig, num_classes: int, token_label: bool = False) -> nn.Module:
    """timm VOLO (mixer ``outlook``) or ELSA-VOLO (``elsa`` / ``lsa`` in place of the Outlooker stage)."""
    from timm.models.volo import VOLO

    n = len(m.depths)
    if not (len(m.embed_dims) == len(m.downsamples) == n):
        raise ValueError(f"model.embed_dims {m.embed_dims} and model.downsamples {m.downsamples} need one entry "
                         f"per stage of model.depths {m.depths}")
    kw = dict(layers=tuple(m.depths), img_size=m.img_size, in_chans=m.in_chans, num_classes=num_classes,
              patch_size=m.patch_size, stem_hidden_dim=m.stem_hidden_dim, embed_dims=tuple(m.embed_dims),
              num_heads=tuple(m.num_heads), downsamples=tuple(m.downsamples),
              outlook_attention=(True,) + (False,) * (n - 1), mlp_ratio=m.mlp_ratio,
              qkv_bias=False if m.qkv_bias is None else m.qkv_bias, drop_path_rate=m.drop_path_rate,
              post_layers=tuple(m.post_layers) or None)
    if m.mixer == "outlook":
        model = TokenLabelVOLO(**kw) if token_label else VOLO(**kw)
        if m.outlook_kernel != 3:
            set_outlook_kernel(model, m.outlook_kernel)
    else:
        model = ElsaVOLO(elsa_kernel=m.elsa_kernel, lam=m.lam, gamma=m.gamma, group_width=m.group_width,
                         elsa_mixer=m.mixer, impl=m.impl, tile=m.tile, **kw)
    if m.init_checkpoint:  # VOLO's fine-tuning at 384-512 px starts from our 224 px run
        load_run_weights(model, m.init_checkpoint, use_ema=m.init_use_ema)
    return model


def param_groups_timm(model: nn.Module, weight_decay: float) -> list[dict]:
    """timm's rule (official ``create_optimizer``): no weight decay on 1-D tensors (norms, biases) and
    on relative-position tables; everything else (ghost matrices included) decays."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name.endswith(".bias") or "relative_position" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@torch.no_grad()
def evaluate_top1(model: nn.Module, dataset, batch_size: int, device: torch.device, num_workers: int = 0,
                  sharded: bool = False) -> float:
    """Top-1 accuracy (%) of ``model`` on ``dataset`` ((image, label) pairs), eval mode. ``sharded`` (every
    DDP rank must call it then): each rank runs its shard, the logits are gathered (shared.engine.dist)."""
    logits, labels = [], []
    loader = (eval_loader(dataset, batch_size, num_workers) if sharded
              else DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers))
    for x, y in loader:
        logits.append(model(x.to(device)).float().cpu())
        labels.append(y)
    logits, labels = torch.cat(logits), torch.cat(labels)
    if sharded:
        logits, labels = gather_cat(logits), gather_cat(labels)
    return top1_accuracy(logits, labels)


class ElsaTask(Task):
    """Image classification with the official recipe's mixup/cutmix + label smoothing (when set)."""

    evaluate_sharded = True  # under DDP every rank evaluates its shard of the evaluation set (issue 24)

    def __init__(self, cfg: ElsaConfig):
        self.cfg = cfg
        d = cfg.data
        self.train_set, self.eval_set = build_datasets(d, cfg.model.img_size, cfg.engine.seed)
        self.mixup = self.token_loss = None
        t = cfg.train
        if t.token_label:  # VOLO's recipe: label maps + MixToken + dense loss, no mixup/cutmix
            check_token_label_family(cfg.model, True)
            if d.mixup > 0 or d.cutmix > 0:
                raise ValueError("train.token_label: set data.mixup=0 data.cutmix=0 (VOLO mixes with MixToken)")
            m = cfg.model
            side = m.img_size // m.patch_size // (2 if m.downsamples[0] else 1)  # VOLO's aux-token grid
            if t.token_label_size != side:
                raise ValueError(f"train.token_label_size must be the aux-token grid side, model.img_size / "
                                 f"{m.img_size // side} = {side} (one target per token), got {t.token_label_size}")
            self.train_set = token_label_train_set(d, m.img_size, t.token_label_root, self.train_set)
            self.token_loss = TokenLabelLoss(t.dense_weight, t.cls_weight, t.ground_truth)
        if d.mixup > 0 or d.cutmix > 0:
            from timm.data import Mixup

            self.mixup = Mixup(mixup_alpha=d.mixup, cutmix_alpha=d.cutmix, label_smoothing=d.smoothing,
                               num_classes=d.num_classes)

    def build_model(self) -> nn.Module:
        return build_model(self.cfg.model, self.cfg.data.num_classes, self.cfg.train)

    def param_groups(self, model: nn.Module) -> list[dict]:
        return param_groups_timm(model, self.cfg.optim.weight_decay)

    def train_dataset(self, epoch: int):
        return self.train_set

    def training_step(self, model, batch, trainer: Trainer) -> dict[str, torch.Tensor]:
        if self.token_loss is not None:
            x, maps, box, y = batch
            t, d = self.cfg.train, self.cfg.data
            target = token_label_targets(maps, box, y, d.num_classes, t.token_label_size, d.smoothing, t.roi_order)
            cls, aux, mix_box = model(x)
            return {"loss": self.token_loss(cls, aux, mix_box, target)}
        x, y = batch
        if self.mixup is not None:
            x, soft = self.mixup(x, y)
            loss = soft_target_ce(model(x), soft)
        else:
            loss = nn.functional.cross_entropy(model(x), y, label_smoothing=self.cfg.data.smoothing)
        return {"loss": loss}

    def evaluate(self, model, trainer: Trainer) -> dict[str, float]:
        return {"top1": evaluate_top1(model, self.eval_set, self.cfg.data.eval_batch_size, trainer.device,
                                      self.cfg.engine.num_workers, sharded=True)}


def main(argv: list[str] | None = None) -> dict:
    return train_main("python -m elsa.train", __doc__, ElsaConfig, lambda cfg, run_dir: ElsaTask(cfg), argv)


if __name__ == "__main__":
    main()
