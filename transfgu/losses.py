"""TransFGU losses [spec 2.4], ``models/loss/{BootstrappingLoss,CLSEmbLoss}.py``.

    L = L_cat + 0.3 L_unc + L_div                    (loss.weights = 1, 0.3, 1)

* pseudo target P: CAM min-max normalised per image over all channels and positions (eps guard: the official
  code divides by zero on a constant CAM); things-only sets prepend a background channel
  ``relu(0.1 - max_c P_c)``; with a teacher ``P <- 0.5 softmax(teacher) + 0.5 P``; ``y = argmax_c P``.
* L_cat = CE(logits, y) - alpha CE(logits, y_neg) while bootstrapping (y_neg: argmax after one random class
  permutation shared by the batch; alpha = [.03 .. .10][k], k = epochs since the last teacher refresh).
* L_unc = 1 - (p1 - p2), softmax top-2 margin; things-only: over the fg channels, on pixels where some P_c > 0.1.
* L_div = 1 + cos(e_i, e_j) over pairs i < j of the normalised output class embeddings.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

ALPHAS = (0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.10)


def normalise_cam(cam: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per-image min-max over ``(C, h, w)`` together; ``cam`` ``(N, C, h, w)``."""
    flat = cam.flatten(1)
    lo, hi = flat.min(1).values.view(-1, 1, 1, 1), flat.max(1).values.view(-1, 1, 1, 1)
    return (cam - lo) / (hi - lo).clamp_min(eps)


def pseudo_target(cam: torch.Tensor, teacher_logits: torch.Tensor | None = None, things_only: bool = True,
                  bg_th: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """``(P (N, C', h, w), fg_pixels (N, h, w) bool)``; C' = C + 1 (channel 0 = background) if ``things_only``."""
    p = normalise_cam(cam)
    fg = (p > bg_th).any(1)
    if things_only:
        p = torch.cat([F.relu(bg_th - p.max(1, keepdim=True).values), p], 1)
    if teacher_logits is not None:
        p = 0.5 * teacher_logits.softmax(1) + 0.5 * p
    return p, fg


def bootstrap_loss(logits: torch.Tensor, target: torch.Tensor, fg: torch.Tensor, alpha: float | None = None,
                   things_only: bool = True, generator: torch.Generator | None = None):
    """``(L_cat (N, h, w), L_unc scalar or (N, h, w), y (N, h, w))`` for ``logits`` and ``target`` ``(N, C', h, w)``.

    ``alpha=None``: no teacher yet, plain CE. ``L_unc`` is a scalar mean over fg pixels when ``things_only``
    (``things_bootstrap_loss``) and a per-pixel map otherwise (``thingstuff_bootstrap_loss``).
    """
    y = target.argmax(1)
    l_cat = F.cross_entropy(logits, y, reduction="none")
    if alpha is not None:
        perm = torch.randperm(target.shape[1], generator=generator, device="cpu").to(target.device)
        l_cat = l_cat - alpha * F.cross_entropy(logits, target[:, perm].argmax(1), reduction="none")
    if things_only:
        top = logits[:, 1:].softmax(1).topk(2, dim=1).values
        margin = (top[:, 0] - top[:, 1])[fg]
        l_unc = 1 - margin.mean() if margin.numel() else logits.sum() * 0
    else:
        top = logits.softmax(1).topk(2, dim=1).values
        l_unc = 1 - (top[:, 0] - top[:, 1])
    return l_cat, l_unc, y


def class_embedding_loss(emb: torch.Tensor) -> torch.Tensor:
    """``(N, C(C-1)/2)``: ``1 + cos`` of every pair i < j; ``emb`` ``(N, C, d)`` already L2-normalised."""
    c = emb.shape[1]
    iu = torch.triu_indices(c, c, 1, device=emb.device)
    return 1 + (emb @ emb.transpose(1, 2))[:, iu[0], iu[1]]


def alpha_for(k: int) -> float:
    """alpha after ``k`` epochs since the last teacher refresh (capped at .10)."""
    return ALPHAS[min(k, len(ALPHAS) - 1)]


def transfgu_loss(logits, emb, cam, teacher_logits=None, k: int = 0, things_only: bool = True,
                  weights=(1.0, 0.3, 1.0), generator=None) -> dict[str, torch.Tensor]:
    """Total loss ``L_cat + 0.3 L_unc + L_div`` (means) and its parts."""
    target, fg = pseudo_target(cam, teacher_logits, things_only)
    alpha = alpha_for(k) if teacher_logits is not None else None
    l_cat, l_unc, y = bootstrap_loss(logits, target, fg, alpha, things_only, generator)
    l_div = class_embedding_loss(emb)
    loss = weights[0] * l_cat.mean() + weights[1] * l_unc.mean() + weights[2] * l_div.mean()
    return {"loss": loss, "cat": l_cat.mean().detach(), "unc": l_unc.mean().detach(), "div": l_div.mean().detach()}
