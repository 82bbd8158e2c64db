"""Train a ViT with a patchify or (scaled-ReLU) conv stem: DeiT recipe on ImageNet-1k, or the embedded
cluttered digits.

    python -m scaled_relu_stem.train --config scaled_relu_stem/configs/scaled_relu_stem_deit-s_8xb128-300e_in1k.yaml \\
        data.root=/data/imagenet
    torchrun --nproc_per_node=8 -m scaled_relu_stem.train --config ... data.root=/data/imagenet
    python -m scaled_relu_stem.train --config ... model.stem.act=none      # the no-ReLU ablation
    python -m scaled_relu_stem.train --config ... optim.sam_rho=0.05       # SAM around AdamW (sam.py)

Logged besides the loss: top-1, ``max_grad_norm`` (global gradient norm, the stability signal) and the
patch-token similarity after the stem and after the last block (:mod:`scaled_relu_stem.diversity`).
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader

from shared.cli import train_main
from shared.engine import EngineConfig, NonFiniteLossError, OptimConfig, RunConfig, SchedConfig, Task
from shared.engine.dist import world_size
from shared.errors import UserError

from .data import DataConfig, build_datasets
from .diversity import layerwise_token_similarity_both
from .model import StemConfig, create_stem_vit, load_deit_weights, stem_embed_layer
from .sam import SAM, frozen_bn_stats
from .stability import LossBlowupError, StabilityConfig, detect_divergence


@dataclass
class ModelConfig:
    """A timm ``VisionTransformer`` (defaults: DeiT-S/16) with ``stem`` replacing patchify."""

    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    num_classes: int = 1000
    drop_path_rate: float = 0.1
    stem: StemConfig = field(default_factory=StemConfig)
    sync_bn: bool = True  # stem BN as SyncBatchNorm under multi-GPU CUDA DDP (spec pitfall 1)
    pretrained: str = ""  # local DeiT checkpoint: every key but patch_embed.* loads


@dataclass
class SRStemOptimConfig(OptimConfig):
    """The engine's optimiser settings plus SAM (Foret et al.).

    ``name: sam`` trains with SAM around ``sam_base`` (sgd | adam | adamw, built by ``shared.engine``) with
    radius ``sam_rho`` (0.05 when left at 0): the task turns it into ``name: <sam_base>`` + ``sam_rho`` before
    the engine builds the optimiser (so ``config.yaml`` of the run records the base), and wraps the built base
    in :class:`scaled_relu_stem.sam.SAM` when training starts. ``sam_rho > 0`` with a plain ``name`` is the same.
    """

    sam_rho: float = 0.0  # > 0: SAM radius (Foret et al.'s default 0.05); 0: plain ``name``
    sam_adaptive: bool = False  # ASAM (Kwon et al. 2021): perturbation scaled by |w|
    sam_base: str = "adamw"  # with name: sam, the optimiser SAM wraps


@dataclass
class SRStemConfig(RunConfig):
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    stability: StabilityConfig = field(default_factory=StabilityConfig)
    # DeiT-S recipe defaults (spec section 4): AdamW 5e-4 * bs / 512, wd 0.05, cosine, 5 warmup epochs
    engine: EngineConfig = field(default_factory=lambda: EngineConfig(epochs=300, batch_size=1024,
                                                                      num_workers=10, amp="bf16",
                                                                      monitor="top1"))
    optim: SRStemOptimConfig = field(default_factory=lambda: SRStemOptimConfig(name="adamw", lr=1e-3,
                                                                               weight_decay=0.05))
    sched: SchedConfig = field(default_factory=lambda: SchedConfig(name="cosine", warmup_epochs=5,
                                                                   warmup_lr_factor=1e-3, min_lr_factor=1e-2))


def timm_param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """DeiT/timm weight-decay rule: no decay on 1-D params (biases, LayerNorm and the stem's BN gamma/beta)
    or on ``model.no_weight_decay()`` names (pos_embed, cls_token)."""
    skip = set(getattr(model, "no_weight_decay", lambda: set())())
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") or name in skip else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def global_grad_norm(model: nn.Module) -> float:
    """L2 norm of all gradients together (as ``clip_grad_norm_`` computes it)."""
    norms = [p.grad.detach().norm() for p in model.parameters() if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0


class SRStemTask(Task):
    """Image classification with soft-target CE (mixup/cutmix) or label-smoothed CE."""

    def __init__(self, cfg: SRStemConfig):
        self.cfg = cfg
        stem_embed_layer(cfg.model.stem)  # a bad stem switch fails here, before the run dir is written
        if cfg.optim.name.lower() == "sam":
            if cfg.optim.sam_base.lower() == "sam":
                raise UserError("optim.sam_base: SAM's base must be sgd | adam | adamw, got 'sam'")
            cfg.optim.name = cfg.optim.sam_base
            cfg.optim.sam_rho = cfg.optim.sam_rho or 0.05
        if cfg.optim.sam_rho < 0:
            raise UserError(f"optim.sam_rho must be >= 0 (0: no SAM), got {cfg.optim.sam_rho}")
        # the embedded data draw follows the run's seed unless data.draw_seed pins it
        draw = cfg.engine.seed if cfg.data.draw_seed is None else cfg.data.draw_seed
        self.train_set, self.val_set = build_datasets(cfg.data, cfg.model.img_size, draw)
        self.mixup = None
        d = cfg.data
        if d.mixup > 0 or d.cutmix > 0:
            from timm.data import Mixup

            self.mixup = Mixup(mixup_alpha=d.mixup, cutmix_alpha=d.cutmix, label_smoothing=d.smoothing,
                               num_classes=cfg.model.num_classes)
        self.step_losses: list[float] = []  # every step's loss: the training curve
        self.grad_norms: list[float] = []
        self.token_similarity: list[float] = []  # per layer (stem, blocks), raw cosine, last evaluation
        self.token_similarity_centred: list[float] = []  # the same, tokens minus their per-image mean

    def build_model(self) -> nn.Module:
        m = self.cfg.model
        model = create_stem_vit(m.stem, img_size=m.img_size, patch_size=m.patch_size, in_chans=m.in_chans,
                                embed_dim=m.embed_dim, depth=m.depth, num_heads=m.num_heads,
                                num_classes=m.num_classes, drop_path_rate=m.drop_path_rate)
        if m.pretrained:
            print(load_deit_weights(model, m.pretrained, num_classes_match=m.num_classes == 1000))
        if m.sync_bn and world_size() > 1 and torch.cuda.is_available():
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return model

    def param_groups(self, model: nn.Module) -> list[dict]:
        return timm_param_groups(model, self.cfg.optim.weight_decay)

    def train_dataset(self, epoch: int):
        return self.train_set

    def train_sampler(self, dataset, epoch: int, world_size: int, rank: int):
        """DeiT's repeated augmentation (3 augmented copies of each image per epoch, sharded over ranks)."""
        if not self.cfg.data.repeated_aug:
            return None
        from shared.data.samplers import repeat_aug_sampler

        return repeat_aug_sampler(dataset, world_size, rank, num_repeats=3)

    def on_train_start(self, trainer) -> None:
        o = self.cfg.optim
        if o.sam_rho > 0:
            if trainer.scaler.is_enabled():
                # GradScaler.step refuses a closure and would not scale SAM's second backward
                raise UserError("optim.sam_rho > 0 with engine.amp=fp16 is not supported: use engine.amp=bf16 "
                                "or off")
            # before the scheduler and a resume's optimizer state: both then go through SAM to the base
            trainer.optimizer = SAM(trainer.optimizer, rho=o.sam_rho, adaptive=o.sam_adaptive)

    def _loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if y.ndim == 2:  # mixup/cutmix soft targets, smoothing included
            return torch.sum(-y * torch.log_softmax(model(x).float(), dim=-1), dim=-1).mean()
        return nn.functional.cross_entropy(model(x).float(), y, label_smoothing=self.cfg.data.smoothing)

    def _sam_second_pass(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, trainer) -> torch.Tensor:
        """SAM's gradient at the perturbed weights: same batch (same mixup draw), same autocast, BN running
        statistics frozen so the batch is not counted twice. Runs inside ``SAM.step`` (the engine's step)."""
        amp = (torch.autocast(trainer.device.type, dtype=trainer.amp_dtype) if trainer.amp_dtype is not None
               else nullcontext())
        with frozen_bn_stats(model), amp:
            loss = self._loss(model, x, y)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"non-finite loss {float(loss)} in SAM's second pass at step "
                                     f"{trainer.global_step + 1}; stopped before updating the weights")
        loss.backward()
        return loss.detach()

    def training_step(self, model: nn.Module, batch, trainer) -> dict[str, torch.Tensor]:
        x, y = batch
        if self.mixup is not None:
            x, y = self.mixup(x, y)  # y -> (B, classes) soft targets, smoothing included
        loss = self._loss(model, x, y)
        if isinstance(getattr(trainer, "optimizer", None), SAM):
            trainer.optimizer.set_closure(lambda: self._sam_second_pass(model, x, y, trainer))
        self.step_losses.append(float(loss.detach()))
        st = self.cfg.stability
        if st.blowup_factor > 0 and len(self.step_losses) >= st.window:
            div, step, reason = detect_divergence(self.step_losses[-st.window:], self.cfg.model.num_classes,
                                                  st.blowup_factor, st.window)
            if div and reason == "blow-up":
                raise LossBlowupError(f"loss blew up at step {len(self.step_losses)} (mean of the last "
                                      f"{st.window} steps > {st.blowup_factor} x ln {self.cfg.model.num_classes})")
        return {"loss": loss}

    def on_step_end(self, trainer, global_step: int) -> None:
        self.grad_norms.append(global_grad_norm(trainer.model))

    @torch.no_grad()
    def evaluate(self, model: nn.Module, trainer) -> dict[str, float]:
        dev = trainer.device
        loader = DataLoader(self.val_set, batch_size=self.cfg.data.eval_batch_size, shuffle=False,
                            num_workers=self.cfg.engine.num_workers)
        correct = total = 0
        probe: list[torch.Tensor] = []
        n_probe = self.cfg.data.probe_images
        for x, y in loader:
            x, y = x.to(dev), y.to(dev)
            correct += int((model(x).argmax(-1) == y).sum())
            total += len(y)
            if sum(len(p) for p in probe) < n_probe:
                probe.append(x)
        sims = layerwise_token_similarity_both(model, torch.cat(probe)[:n_probe])
        self.token_similarity, self.token_similarity_centred = sims["raw"], sims["centred"]
        return {"top1": 100.0 * correct / max(total, 1), "token_sim_stem": self.token_similarity[0],
                "token_sim_last": self.token_similarity[-1],
                "token_sim_centred_stem": self.token_similarity_centred[0],
                "token_sim_centred_last": self.token_similarity_centred[-1],
                "max_grad_norm": max(self.grad_norms, default=0.0)}


def main(argv=None):
    return train_main("python -m scaled_relu_stem.train", __doc__, SRStemConfig,
                      lambda cfg, run_dir: SRStemTask(cfg), argv)


if __name__ == "__main__":
    main()
