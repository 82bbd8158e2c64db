"""Losses: DINO self-distillation (pre-training) and TransReID's CE + soft-margin batch-hard triplet (fine-tune).

DINO (Caron et al. 2021, Eq. 1-2 and the centering update of Sec. 3.1; official ``DINOLoss``)::

    P_i = softmax((t_i - c) / tau_t)      teacher, global views i in {1, 2}
    Q_v = log_softmax(s_v / tau_s)        student, every view v (2 global + n local)
    L   = mean over pairs (i, v != i) of  mean_b  -sum_k P_i[b, k] Q_v[b, k]
    c  <- m c + (1 - m) mean_{b, i} t_i   (after the loss; all-reduced over ranks)

TransReID supervised loss (``make_loss``, ``MODEL.NO_MARGIN True``)::

    L = CE(logits, y) + log(1 + exp(d_ap - d_an))   batch-hard d on the pre-BN features, Euclidean
"""
from __future__ import annotations

import numpy as np
import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from torch import nn


class DINOLoss(nn.Module):
    """Cross-entropy between centred, sharpened teacher and student distributions over K prototypes.

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


def euclidean_dist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(M, D), (N, D) -> (M, N) Euclidean distances, ``clamp(min=1e-12).sqrt()`` as the official code."""
    d = x.pow(2).sum(1, keepdim=True) + y.pow(2).sum(1, keepdim=True).t() - 2 * x @ y.t()
    return d.clamp(min=1e-12).sqrt()


def hard_example_mining(dist: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch-hard: the farthest positive (the anchor itself counts) and the nearest negative per anchor, (B,)."""
    same = labels[:, None] == labels[None, :]
    d_ap = dist.masked_fill(~same, float("-inf")).max(dim=1).values
    d_an = dist.masked_fill(same, float("inf")).min(dim=1).values
    return d_ap, d_an


def soft_margin_triplet(feat: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``SoftMarginLoss(d_an - d_ap, 1)`` = mean log(1 + exp(d_ap - d_an)) on unnormalised (B, D) features."""
    d_ap, d_an = hard_example_mining(euclidean_dist(feat, feat), labels)
    return F.softplus(d_ap - d_an).mean()


def reid_loss(logits: torch.Tensor, global_feat: torch.Tensor, labels: torch.Tensor,
              id_weight: float = 1.0, triplet_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """CE on the post-BN logits (no label smoothing) + soft triplet on the pre-BN feature, weights 1:1."""
    ce = F.cross_entropy(logits, labels)
    tri = soft_margin_triplet(global_feat, labels)
    return {"loss": id_weight * ce + triplet_weight * tri, "id": ce, "triplet": tri}
