"""MotionRGBD losses: label-smoothed CE, RCM distillation KL, the unimodal multi-loss and CAPF's loss."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def ce_ls(logits: torch.Tensor, target: torch.Tensor, smoothing: float = 0.1) -> torch.Tensor:
    """Official LabelSmoothingCrossEntropy: (1 - eps) NLL + eps mean_k(-log p_k), batch mean."""
    logp = F.log_softmax(logits, -1)
    return (1 - smoothing) * F.nll_loss(logp, target) + smoothing * (-logp.mean(-1)).mean()


def distillation_kl(student: torch.Tensor, teacher: torch.Tensor, temper: float) -> torch.Tensor:
    """L_KL = KL(softmax(teacher.detach()/tau) || softmax(student/tau)), reduction 'sum' over the batch.

    teacher = mean of the three branch CLS features (B, D); student = RCM Linear(T -> D)(u) (B, D).
    """
    return F.kl_div(F.log_softmax(student / temper, -1), F.softmax(teacher.detach() / temper, -1), reduction="sum")


def unimodal_loss(outputs, kl: torch.Tensor, target: torch.Tensor, weights=(1.0, 0.5, 0.5, 0.5),
                  distill: float = 1.0, smoothing: float = 0.1) -> dict[str, torch.Tensor]:
    """L = CE_ls(z) + 0.5 [CE_ls(z_s) + CE_ls(z_m) + CE_ls(z_l)] + lambda L_KL (official multi-loss)."""
    ce = sum(w * ce_ls(o, target, smoothing) for w, o in zip(weights, outputs))
    return {"loss": ce + distill * kl, "ce": ce.detach(), "kl": kl.detach()}


def capf_losses(y, r, d, p_m, p_k, x_hat, hm, hk, kl, target, smoothing: float = 0.1) -> dict[str, torch.Tensor]:
    """CAPF: CE(y) + CE(r) + CE(d) + BCE(p_M, 1) + BCE(p_K, 0) + MSE(x_hat, h_M) + MSE(x_hat, h_K) + KL_M + KL_K."""
    ce = ce_ls(y, target, smoothing) + ce_ls(r, target, smoothing) + ce_ls(d, target, smoothing)
    with torch.autocast(p_m.device.type, enabled=False):  # CUDA autocast refuses BCE on probabilities
        p_m, p_k = p_m.float(), p_k.float()
        bce = F.binary_cross_entropy(p_m, torch.ones_like(p_m)) + F.binary_cross_entropy(p_k, torch.zeros_like(p_k))
    mse = F.mse_loss(x_hat, hm) + F.mse_loss(x_hat, hk)
    return {"loss": ce + bce + mse + kl, "ce": ce.detach(), "bce": bce.detach(), "mse": mse.detach(),
            "kl": kl.detach()}
