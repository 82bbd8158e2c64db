"""Losses: TransReID's CE + soft-margin batch-hard triplet (fine-tune). DINO's loss: ``shared.dino.DINOLoss``.

TransReID supervised loss (``make_loss``, ``MODEL.NO_MARGIN True``)::

    L = CE(logits, y) + log(1 + exp(d_ap - d_an))   batch-hard d on the pre-BN features, Euclidean
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


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
