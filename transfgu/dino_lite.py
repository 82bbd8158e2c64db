"""A few hundred steps of DINO (Caron et al., 2021) on the embedded scenes: the stand-in for DINO ViT-S/8.

No pretrained weight can be downloaded here, so the embedded pipeline first trains a tiny ViT (patch 8, d 64,
depth 4, 4 heads) with the DINO objective (spec ``dino.md``, small-scale settings):

* multi-crop: 2 global crops (64 px, scale .35-1) + ``n_local`` local crops (32 px, scale .08-.35), crop and
  resize by ``torchvision.ops.roi_align`` (bilinear), horizontal flip, per-image brightness/contrast jitter,
  random channel order, grayscale p .2;
* head: Linear(d,256)-GELU-Linear(256,256)-GELU-Linear(256,64) -> L2-normalise -> weight-normalised
  Linear(64, K) with ``weight_g`` frozen at 1 (``norm_last_layer=True``);
* loss: ``-sum softmax((t - c)/tau_t) log_softmax(s/tau_s)`` over pairs of different views, centre
  ``c <- .9 c + .1 mean(t)``, ``tau_t`` .04 -> .07 over the first 30 % of steps, ``tau_s`` .1;
* teacher EMA ``m`` cosine from ``m0`` to 1; AdamW, linear warmup then cosine LR, per-tensor clipping at 3.

Simplified against DINO: constant weight decay (.04, not .04 -> .4), no blur/solarisation, no
last-layer freeze epoch. The TransFGU stages only read the backbone.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align


class DINOHead(nn.Module):
    def __init__(self, dim: int, out_dim: int = 512, hidden: int = 256, bottleneck: int = 64):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, bottleneck))
        self.last_layer = nn.utils.parametrizations.weight_norm(nn.Linear(bottleneck, out_dim, bias=False))
        self.last_layer.parametrizations.weight.original0.data.fill_(1)
        self.last_layer.parametrizations.weight.original0.requires_grad = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1))


def random_resized_crops(x: torch.Tensor, out: int, scale: tuple[float, float], g: torch.Generator) -> torch.Tensor:
    """One random square-ish crop per image of ``x`` ``(B, 3, S, S)`` resized to ``out`` (+ flip, jitter)."""
    b, _, s, _ = x.shape
    area = torch.empty(b).uniform_(*scale, generator=g) * s * s
    ratio = torch.exp(torch.empty(b).uniform_(math.log(3 / 4), math.log(4 / 3), generator=g))
    w = (area * ratio).sqrt().clamp(4, s)
    h = (area / ratio).sqrt().clamp(4, s)
    x0 = torch.rand(b, generator=g) * (s - w)
    y0 = torch.rand(b, generator=g) * (s - h)
    boxes = torch.stack([torch.arange(b, dtype=torch.float32), x0, y0, x0 + w, y0 + h], 1)
    crops = roi_align(x, boxes, out, spatial_scale=1.0, sampling_ratio=2, aligned=True)
    flip = torch.rand(b, generator=g) < 0.5
    crops[flip] = crops[flip].flip(-1)
    bright = torch.empty(b, 1, 1, 1).uniform_(-0.4, 0.4, generator=g)
    contrast = torch.empty(b, 1, 1, 1).uniform_(0.6, 1.4, generator=g)
    mean = crops.mean((1, 2, 3), keepdim=True)
    crops = (crops - mean) * contrast + mean + bright
    # colour is random per region in the scenes: a random channel order and grayscale (p .2) push the features
    # towards texture (stands in for DINO's hue jitter)
    order = torch.stack([torch.randperm(3, generator=g) for _ in range(b)])
    crops = crops.gather(1, order.view(b, 3, 1, 1).expand_as(crops))
    gray = torch.rand(b, generator=g) < 0.2
    crops[gray] = crops[gray].mean(1, keepdim=True).expand(-1, 3, -1, -1)
    return crops


def dino_loss(student: list[torch.Tensor], teacher: list[torch.Tensor], center: torch.Tensor, tau_t: float,
              tau_s: float = 0.1) -> torch.Tensor:
    """Mean over pairs (teacher view i, student view v != i) of the batch-mean cross-entropy."""
    total, n = 0.0, 0
    for i, t in enumerate(teacher):
        p = F.softmax((t - center) / tau_t, -1)
        for v, s in enumerate(student):
            if v == i:
                continue
            total = total + (-p * F.log_softmax(s / tau_s, -1)).sum(-1).mean()
            n += 1
    return total / n


def train_dino(vit: nn.Module, images: torch.Tensor, steps: int = 200, batch: int = 50, lr: float = 1e-3,
               out_dim: int = 512, n_local: int = 4, m0: float = 0.99, seed: int = 0, log_every: int = 50,
               log=print) -> list[dict]:
    """Train ``vit`` (in place; the teacher's backbone is copied back at the end, as DINO releases the teacher).

    ``images`` ``(N, 3, S, S)`` normalised. Returns per-``log_every`` dicts (loss, teacher entropies).
    """
    g = torch.Generator().manual_seed(seed)
    dim = vit.embed_dim
    student = nn.ModuleDict({"backbone": vit, "head": DINOHead(dim, out_dim)})
    teacher = copy.deepcopy(student).requires_grad_(False)
    opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=lr, weight_decay=0.04)
    center = torch.zeros(1, out_dim)
    warm = max(1, steps // 10)
    history = []
    student.train()
    for it in range(steps):
        opt.param_groups[0]["lr"] = lr * (it + 1) / warm if it < warm else \
            1e-6 + (lr - 1e-6) * 0.5 * (1 + math.cos(math.pi * (it - warm) / max(1, steps - warm)))
        tau_t = 0.04 + (0.07 - 0.04) * min(1.0, it / max(1, 0.3 * steps))
        x = images[torch.randint(len(images), (batch,), generator=g)]
        glob = [random_resized_crops(x, 64, (0.35, 1.0), g) for _ in range(2)]
        loc = [random_resized_crops(x, 32, (0.08, 0.35), g) for _ in range(n_local)]

        def run(net, views):
            return [net["head"](net["backbone"].forward_features(v)[:, 0]) for v in views]

        with torch.no_grad():
            t_out = run(teacher, glob)
        s_out = run(student, glob + loc)
        loss = dino_loss(s_out, t_out, center, tau_t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for p in student.parameters():
            if p.grad is not None:
                torch.nn.utils.clip_grad_norm_([p], 3.0)
        opt.step()
        with torch.no_grad():
            m = 1 - (1 - m0) * (1 + math.cos(math.pi * it / steps)) / 2
            for pt, ps in zip(teacher.parameters(), student.parameters()):
                pt.mul_(m).add_(ps.detach(), alpha=1 - m)
            t_cat = torch.cat(t_out)
            center = 0.9 * center + 0.1 * t_cat.mean(0, keepdim=True)
        if (it + 1) % log_every == 0 or it == steps - 1:
            p = F.softmax((t_cat - center) / tau_t, -1)
            ent = float(-(p * p.clamp_min(1e-12).log()).sum(-1).mean())
            pm = p.mean(0)
            ent_mean = float(-(pm * pm.clamp_min(1e-12).log()).sum())
            history.append({"step": it + 1, "loss": float(loss.detach()), "teacher_entropy": ent,
                            "batch_mean_entropy": ent_mean})
            log(f"    dino step {it + 1}/{steps}: loss {float(loss.detach()):.3f}, teacher H {ent:.2f}, "
                f"batch-mean H {ent_mean:.2f} (ln K = {math.log(out_dim):.2f})")
    vit.load_state_dict(teacher["backbone"].state_dict())
    return history
