"""DINO (Caron et al., ICCV 2021), one implementation for every paper that pre-trains with it.

Follows ``facebookresearch/dino`` ``main_dino.py`` / ``vision_transformer.py`` / ``utils.py`` (spec ``dino.md``):

* :class:`DINOHead` -- MLP d -> hidden -> hidden -> bottleneck (GELU), L2-normalise, weight-normed
  ``last_layer`` (official key names ``mlp.{0,2,4}``, ``last_layer.weight_g`` / ``weight_v``);
* :class:`MultiCropWrapper` -- one backbone pass per run of same-resolution crops, head once;
* :class:`DINOModel` -- student and EMA teacher (teacher starts as a copy, gets no gradient);
* :class:`DINOLoss` -- centred, sharpened teacher vs student cross-entropy over pairs of different views,
  centre EMA all-reduced over ranks, the per-epoch teacher-temperature schedule;
* :func:`cosine_schedule` -- ``utils.cosine_scheduler`` (per-iteration lr, weight decay, teacher momentum);
* :class:`DINOMultiCrop` -- ``DataAugmentationDINO`` (2 global + n local crops, flip, colour jitter,
  grayscale, blur, solarise), with any crop shape (person-shaped for TransReID-SSL, square for TransFGU);
* :class:`DINOConfig` -- the ``main_dino.py`` arguments (official defaults);
* :class:`DINOTask` -- the engine task: the paper gives the image dataset and the backbone factory; the
  per-iteration schedules, per-tensor clipping and the frozen last layer of the first epoch(s) live in an
  optimizer pre-step hook (after backward, DDP sync and AMP unscaling: where the official loop does them).

Used by ``transreid_ssl`` (LUPerson / SynPerson pre-training) and ``transfgu`` (the ViT-S/8 stand-in).
"""
from __future__ import annotations

import math
import random
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from PIL import Image, ImageFilter, ImageOps
from torch import nn
from torch.utils.data import Dataset
from torchvision import transforms as T

from shared.engine import Task, Trainer

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class DINOHead(nn.Module):
    """MLP d -> hidden -> hidden -> bottleneck (GELU), L2-normalise, weight-normed Linear -> K (no bias).

    ``norm_last_layer``: ``last_layer.weight_g`` fixed at 1 (not trained). ``use_bn`` (official
    ``--use_bn_in_head``, default off): BatchNorm1d after each hidden Linear, before its GELU (keys
    ``mlp.{0,3,6}`` Linear, ``mlp.{1,4}`` BN). (B, d) -> (B, K).
    """

    def __init__(self, in_dim: int, out_dim: int = 65536, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 nlayers: int = 3, norm_last_layer: bool = True, use_bn: bool = False):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (nlayers - 1) + [bottleneck_dim]
        layers: list[nn.Module] = []
        for i in range(nlayers):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < nlayers - 1:
                if use_bn:
                    layers.append(nn.BatchNorm1d(dims[i + 1]))
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        with warnings.catch_warnings():  # the old API keeps the official weight_g / weight_v key names
            warnings.simplefilter("ignore", FutureWarning)
            self.last_layer = nn.utils.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        self.last_layer.weight_g.data.fill_(1)
        self.last_layer.weight_g.requires_grad = not norm_last_layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1, p=2)
        return self.last_layer(x)


class MultiCropWrapper(nn.Module):
    """Backbone once per run of same-resolution crops, CLS features concatenated, head once.

    ``forward([x_1, ..., x_V])`` with ``x_v`` (B, 3, H_v, W_v) -> (V*B, K), views in input order.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, crops: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        if torch.is_tensor(crops):
            crops = [crops]
        sizes = torch.tensor([c.shape[-2] * 10000 + c.shape[-1] for c in crops])
        ends = torch.cumsum(torch.unique_consecutive(sizes, return_counts=True)[1], 0).tolist()
        feats, start = [], 0
        for end in ends:
            feats.append(self.backbone(torch.cat(crops[start:end])))
            start = end
        return self.head(torch.cat(feats))


class DINOModel(nn.Module):
    """Student and teacher (same architecture; the teacher gets no gradient and follows the student by EMA).

    The teacher starts as an exact copy of the student (official ``load_state_dict(student.state_dict())``).
    """

    def __init__(self, student: MultiCropWrapper, teacher: MultiCropWrapper):
        super().__init__()
        self.student, self.teacher = student, teacher
        self.teacher.load_state_dict(self.student.state_dict())
        for p in self.teacher.parameters():
            p.requires_grad = False

    def forward(self, crops: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Student logits on every crop (V*B, K); teacher logits (no grad) on the 2 global crops (2*B, K).

        One forward for both keeps DDP's gradient sync on the student (the teacher has no trainable
        parameters, so DDP ignores it)."""
        with torch.no_grad():
            teacher_out = self.teacher(crops[:2])
        return self.student(crops), teacher_out

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """theta_t <- m theta_t + (1 - m) theta_s over backbone and head parameters (buffers not averaged)."""
        for ps, pt in zip(self.student.parameters(), self.teacher.parameters()):
            pt.mul_(momentum).add_(ps.detach(), alpha=1 - momentum)


class DINOLoss(nn.Module):
    """DINO Eq. 1-2 and the centering of Sec. 3.1 (official ``DINOLoss``)::

        P_i = softmax((t_i - c) / tau_t)      teacher, global views i in {1, 2}
        Q_v = log_softmax(s_v / tau_s)        student, every view v (2 global + n local)
        L   = mean over pairs (i, v != i) of  mean_b  -sum_k P_i[b, k] Q_v[b, k]
        c  <- m c + (1 - m) mean_{b, i} t_i   (after the loss; all-reduced over ranks)

    Cross-entropy between centred, sharpened teacher and student distributions over K prototypes.

    ``teacher_temp`` follows DINO's per-epoch schedule: linear ``warmup_teacher_temp -> teacher_temp``
    over ``warmup_teacher_temp_epochs``, then constant (TransReID-SSL: 0.04 -> 0.04, no warm-up).
    """

    def __init__(self, out_dim: int, n_crops: int, warmup_teacher_temp: float = 0.04, teacher_temp: float = 0.04,
                 warmup_teacher_temp_epochs: int = 0, epochs: int = 100, student_temp: float = 0.1,
                 center_momentum: float = 0.9):
        super().__init__()
        self.n_crops, self.student_temp, self.center_momentum = n_crops, student_temp, center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))
        w = int(warmup_teacher_temp_epochs)
        self.teacher_temp_schedule = np.concatenate((np.linspace(warmup_teacher_temp, teacher_temp, w),
                                                     np.ones(max(epochs - w, 0)) * teacher_temp))

    def forward(self, student_output: torch.Tensor, teacher_output: torch.Tensor, epoch: int) -> torch.Tensor:
        """``student_output`` (n_crops*B, K), ``teacher_output`` (2*B, K), views stacked in crop order."""
        student_out = (student_output / self.student_temp).chunk(self.n_crops)
        temp = float(self.teacher_temp_schedule[min(epoch, len(self.teacher_temp_schedule) - 1)])
        probs = F.softmax((teacher_output - self.center) / temp, dim=-1).detach()
        self.last_entropies = teacher_entropies(probs)
        teacher_out = probs.chunk(2)
        total, n_terms = 0.0, 0
        for iq, q in enumerate(teacher_out):
            for v in range(len(student_out)):
                if v == iq:
                    continue  # the student's view of the same crop is skipped
                total = total + torch.sum(-q * F.log_softmax(student_out[v], dim=-1), dim=-1).mean()
                n_terms += 1
        self.update_center(teacher_output)
        return total / n_terms

    @torch.no_grad()
    def update_center(self, teacher_output: torch.Tensor) -> None:
        """EMA of the batch-mean teacher logits, averaged over all ranks (official ``update_center``)."""
        batch_center = teacher_output.sum(dim=0, keepdim=True)
        n = torch.tensor(float(len(teacher_output)), device=teacher_output.device)
        if torch_dist.is_available() and torch_dist.is_initialized():
            torch_dist.all_reduce(batch_center)
            torch_dist.all_reduce(n)
        batch_center = batch_center / n
        self.center.mul_(self.center_momentum).add_(batch_center.float(), alpha=1 - self.center_momentum)


@torch.no_grad()
def teacher_entropies(probs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Collapse diagnostics of the teacher's (N, K) distributions (DINO Sec. 5.3): the mean per-sample
    entropy and the entropy of the batch-mean distribution. Both near ln K: uniform collapse; both near 0:
    one-hot collapse; healthy: low per-sample, high batch-mean."""
    ent = lambda p: -(p * p.clamp_min(1e-12).log()).sum(-1)  # noqa: E731
    return {"teacher_entropy": ent(probs).mean(), "teacher_mean_entropy": ent(probs.mean(0))}


def cosine_schedule(base: float, final: float, epochs: int, niter_per_ep: int, warmup_epochs: int = 0,
                    start_warmup_value: float = 0.0) -> np.ndarray:
    """DINO ``utils.cosine_scheduler``: linear warm-up prefix, then cosine over the remaining iterations."""
    warmup = np.linspace(start_warmup_value, base, warmup_epochs * niter_per_ep) if warmup_epochs else np.array([])
    iters = np.arange(epochs * niter_per_ep - len(warmup))
    sched = final + 0.5 * (base - final) * (1 + np.cos(np.pi * iters / max(len(iters), 1)))
    return np.concatenate((warmup, sched))


class RandomGaussianBlur:
    """DINO's ``GaussianBlur``: PIL blur with radius U[min, max] applied with probability ``p``."""

    def __init__(self, p: float, radius_min: float = 0.1, radius_max: float = 2.0):
        self.p, self.lo, self.hi = p, radius_min, radius_max

    def __call__(self, img: Image.Image) -> Image.Image:
        if random.random() >= self.p:
            return img
        return img.filter(ImageFilter.GaussianBlur(radius=random.uniform(self.lo, self.hi)))


class RandomSolarize:
    def __init__(self, p: float):
        self.p = p

    def __call__(self, img: Image.Image) -> Image.Image:
        return ImageOps.solarize(img) if random.random() < self.p else img


class RandomChannelGain:
    """A camera's colour cast as an augmentation (ours, not DINO's): per-channel gain U[1 - g, 1 + g], then gamma
    exp(U[-ln gamma_max, ln gamma_max]), on [0, 1] intensities. ``g = 0``: the identity, and no random draw."""

    def __init__(self, gain: float, gamma_max: float = 1.0):
        self.gain, self.log_gamma = gain, math.log(max(gamma_max, 1.0))

    def __call__(self, img: Image.Image) -> Image.Image:
        if self.gain <= 0:
            return img
        gains = np.array([random.uniform(1 - self.gain, 1 + self.gain) for _ in range(3)])
        gamma = math.exp(random.uniform(-self.log_gamma, self.log_gamma))
        x = np.clip(np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0 * gains, 0.0, 1.0) ** gamma
        return Image.fromarray((x * 255.0).round().astype(np.uint8))


class DINOMultiCrop:
    """DINO's ``DataAugmentationDINO``; any crop shape (TransReID-SSL's fork: person-shaped 256x128 / 128x64).

    2 global crops ``global_size`` (scale ``global_scale``), ``n_local`` crops ``local_size``; flip,
    ColorJitter(.4,.4,.2,.1) p .8, grayscale p .2; blur p 1.0 / 0.1 / 0.5 (global 1 / global 2 / locals);
    solarize p .2 on global 2; ImageNet mean/std. Returns a list of 2 + n_local tensors.

    ``color_jitter_p``, ``grayscale_p``, ``solarize_p`` (official .8 / .2 / .2) are switches for studies of the
    augmentation; ``channel_gain`` / ``channel_gamma`` (off by default) add :class:`RandomChannelGain` after the
    colour jitter. :meth:`from_config` builds it from a :class:`DINOConfig`.
    """

    def __init__(self, global_size=(256, 128), local_size=(128, 64), n_local: int = 8,
                 global_scale=(0.4, 1.0), local_scale=(0.05, 0.4), blur_radius_max: float = 2.0,
                 color_jitter_p: float = 0.8, grayscale_p: float = 0.2, solarize_p: float = 0.2,
                 channel_gain: float = 0.0, channel_gamma: float = 1.0):
        bic = T.InterpolationMode.BICUBIC
        flip_color = T.Compose([T.RandomHorizontalFlip(0.5),
                                T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=color_jitter_p),
                                T.RandomGrayscale(grayscale_p), RandomChannelGain(channel_gain, channel_gamma)])
        norm = T.Compose([T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])

        def blur(p):
            return RandomGaussianBlur(p, 0.1, blur_radius_max)

        self.global1 = T.Compose([T.RandomResizedCrop(global_size, scale=tuple(global_scale), interpolation=bic),
                                  flip_color, blur(1.0), norm])
        self.global2 = T.Compose([T.RandomResizedCrop(global_size, scale=tuple(global_scale), interpolation=bic),
                                  flip_color, blur(0.1), RandomSolarize(solarize_p), norm])
        self.local = T.Compose([T.RandomResizedCrop(local_size, scale=tuple(local_scale), interpolation=bic),
                                flip_color, blur(0.5), norm])
        self.n_local = n_local

    @classmethod
    def from_config(cls, g: DINOConfig, global_size) -> DINOMultiCrop:
        return cls(tuple(global_size), tuple(g.local_size), g.n_local, tuple(g.global_scale), tuple(g.local_scale),
                   g.blur_radius_max, g.color_jitter_p, g.grayscale_p, g.solarize_p, g.channel_gain, g.channel_gamma)

    def __call__(self, img: Image.Image) -> list[torch.Tensor]:
        return [self.global1(img), self.global2(img)] + [self.local(img) for _ in range(self.n_local)]


@dataclass
class DINOConfig:
    """``main_dino.py`` arguments with the official defaults (the global crop size is the model's input size)."""

    out_dim: int = 65536
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    norm_last_layer: bool = True
    use_bn_in_head: bool = False
    n_local: int = 8
    local_size: list[int] = field(default_factory=lambda: [128, 64])
    global_scale: list[float] = field(default_factory=lambda: [0.4, 1.0])
    local_scale: list[float] = field(default_factory=lambda: [0.05, 0.4])
    blur_radius_max: float = 2.0
    color_jitter_p: float = 0.8  # ours as switches (official values): augmentation studies on embedded data
    grayscale_p: float = 0.2
    solarize_p: float = 0.2
    channel_gain: float = 0.0  # ours, off: RandomChannelGain (a camera colour cast), e.g. .4 with channel_gamma 1.6
    channel_gamma: float = 1.0
    base_lr: float = 0.0005  # peak lr = base_lr * batch / 256
    min_lr: float = 1e-6
    warmup_epochs: int = 10
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    clip_grad: float = 3.0  # per parameter tensor
    freeze_last_layer: int = 1
    momentum_teacher: float = 0.996
    warmup_teacher_temp: float = 0.04
    teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: int = 0


class DINOTask(Task):
    """DINO pre-training on any image dataset whose items are ``(crops, ...)`` with ``crops`` a
    :class:`DINOMultiCrop` output. ``backbone_fn(drop_path_rate)`` builds the student / teacher backbone
    (``embed_dim`` attribute; ``forward`` gives the CLS feature); ``cfg`` carries ``dino`` (:class:`DINOConfig`)
    and ``engine`` (epochs, batch_size, drop_last). The model is a :class:`DINOModel`; the teacher backbone
    is what DINO releases.
    """

    def __init__(self, cfg, dataset: Dataset, backbone_fn: Callable[[float], nn.Module], drop_path_rate: float = 0.1,
                 sync_bn: bool = False):
        self.cfg, self.dataset, self.backbone_fn = cfg, dataset, backbone_fn
        self.drop_path_rate, self.sync_bn = drop_path_rate, sync_bn
        self.schedules: dict[str, np.ndarray] = {}

    def build_model(self) -> nn.Module:
        g = self.cfg.dino

        def wrapper(dpr):
            backbone = self.backbone_fn(dpr)
            return MultiCropWrapper(backbone, DINOHead(backbone.embed_dim, g.out_dim, g.hidden_dim, g.bottleneck_dim,
                                                       3, g.norm_last_layer, g.use_bn_in_head))

        model = DINOModel(wrapper(self.drop_path_rate), wrapper(0.0))
        if (self.sync_bn or g.use_bn_in_head) and torch_dist.is_available() and torch_dist.is_initialized():
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # official: SyncBN for a BN stem / BN head
        model.dino_loss = DINOLoss(g.out_dim, 2 + g.n_local, g.warmup_teacher_temp, g.teacher_temp,
                                   g.warmup_teacher_temp_epochs, self.cfg.engine.epochs)
        return model

    def param_groups(self, model):
        """``utils.get_params_groups``: biases and 1-D tensors are not regularised."""
        reg, noreg = [], []
        for n, p in model.student.named_parameters():
            if p.requires_grad:
                (noreg if n.endswith(".bias") or p.ndim == 1 else reg).append(p)
        return [{"params": reg}, {"params": noreg, "weight_decay": 0.0}]

    def train_dataset(self, epoch: int):
        return self.dataset

    def on_train_start(self, trainer: Trainer) -> None:
        g, e = self.cfg.dino, self.cfg.engine
        total = e.batch_size  # engine.batch_size is the total batch over all ranks
        per_ep = len(self.dataset) // total if e.drop_last else math.ceil(len(self.dataset) / total)
        if per_ep < 1:
            raise ValueError(f"data: {len(self.dataset)} images give no full batch of engine.batch_size={e.batch_size}")
        peak = g.base_lr * total / 256.0  # linear scaling rule, total batch
        self.schedules = {
            "lr": cosine_schedule(peak, g.min_lr, e.epochs, per_ep, g.warmup_epochs),
            "wd": cosine_schedule(g.weight_decay, g.weight_decay_end, e.epochs, per_ep),
            "momentum": cosine_schedule(g.momentum_teacher, 1.0, e.epochs, per_ep),
        }
        trainer.optimizer.register_step_pre_hook(lambda opt, args, kwargs: self._pre_step(trainer))

    def _it(self, trainer: Trainer) -> int:
        return min(trainer.global_step, len(self.schedules["lr"]) - 1)

    def _pre_step(self, trainer: Trainer) -> None:
        it, g = self._it(trainer), self.cfg.dino
        for i, group in enumerate(trainer.optimizer.param_groups):
            group["lr"] = float(self.schedules["lr"][it])
            if i == 0:  # only the regularised group
                group["weight_decay"] = float(self.schedules["wd"][it])
        student = trainer.model.student
        if g.clip_grad:
            for p in student.parameters():
                if p.grad is not None:
                    coef = g.clip_grad / (p.grad.norm(2) + 1e-6)
                    p.grad.mul_(coef.clamp(max=1.0))
        if trainer.epoch < g.freeze_last_layer:
            for p in student.head.last_layer.parameters():
                p.grad = None

    def training_step(self, model, batch, trainer):
        student_out, teacher_out = model(batch[0])
        dino_loss = trainer.model.dino_loss
        return {"loss": dino_loss(student_out, teacher_out, trainer.epoch), **dino_loss.last_entropies}

    def on_step_end(self, trainer: Trainer, global_step: int) -> None:
        trainer.model.update_teacher(float(self.schedules["momentum"][min(global_step - 1,
                                                                          len(self.schedules["momentum"]) - 1)]))
