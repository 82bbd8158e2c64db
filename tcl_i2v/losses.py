"""Losses: per-network supervision (VKD), Triplet Contrast Loss (TCL), mutual learning, and the KD baselines.

Only the abstract of Wang, Wang & Li (arXiv 2201.08887) is retrievable and no code is released, so
TCL and mutual learning are reconstructions (spec 1.3-1.4, [REC]); every unknown is an argument:

- TCL (spec 1.3): for each anchor i, mine on the *teacher* distances the hardest positive p(i) and the
  k nearest negatives n_1..n_k(i) (``mining="hard"``; ``"random"`` is the mining ablation S5); for each
  network m build ``q^m_i = softmax(-[D^m_ip, D^m_in1, ..., D^m_ink] / tau)`` and take
  ``L_TCL = 1/B sum_i KL(q^T_i || q^S_i)`` with q^T detached (times tau^2 when ``tau_sq``). For k = 1,
  ``q_i(pos) = sigmoid((D_in - D_ip) / tau)``: the soft-margin triplet turned into a probability.
- Mutual learning A (DML, spec 1.4): ``KL(p_T || p_S)`` for the student and ``KL(p_S || p_T)`` for the
  teacher on temperature-softened identity posteriors, the target side detached; reading B (bidirectional
  TCL) is ``tcl_loss`` with the roles swapped.

The baselines are exact transcriptions of the official code (spec 1.2, 1.6): VKD ``model/loss.py`` /
``tools/train_distill.py`` and TKP ``utils/losses.py`` / ``train.py``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def pairwise_euclidean(x: torch.Tensor, y: torch.Tensor | None = None, eps: float = 1e-12) -> torch.Tensor:
    """``(B, D), (C, D) -> (B, C)`` Euclidean distances ``sqrt(max(d^2, 0) + eps)`` (VKD: sqrt(d^2 + 1e-12))."""
    y = x if y is None else y
    d2 = (x * x).sum(1, keepdim=True) + (y * y).sum(1)[None] - 2 * x @ y.t()
    return (d2.clamp_min(0) + eps).sqrt()


def batch_hard_soft_triplet(emb: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
    """VKD ``TripletLoss(margin='soft')``: mean softplus(max d_ap - min d_an) over anchors. ``emb (B, D)``."""
    d = pairwise_euclidean(emb)
    same = pids[:, None] == pids[None]
    d_ap = d.masked_fill(~same, float("-inf")).max(1).values
    d_an = d.masked_fill(same, float("inf")).min(1).values
    return F.softplus(d_ap - d_an).mean()


def hetero_triplet(anchor: torch.Tensor, a_pids: torch.Tensor, other: torch.Tensor, o_pids: torch.Tensor,
                   margin: float = 0.3) -> torch.Tensor:
    """TKP ``TripletLoss`` across modalities: batch-hard with a hard margin, anchors from ``anchor (B, D)``,
    positives/negatives from ``other (C, D)`` (i2v, v2i, i2i, v2v are the four pairings)."""
    d = pairwise_euclidean(anchor, other)
    same = a_pids[:, None] == o_pids[None]
    d_ap = d.masked_fill(~same, float("-inf")).max(1).values
    d_an = d.masked_fill(same, float("inf")).min(1).values
    return F.relu(d_ap - d_an + margin).mean()


def mine_triplets(d_teacher: torch.Tensor, pids: torch.Tensor, k: int = 1, mining: str = "hard",
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``pos (B,)`` and ``neg (B, k)`` per anchor, mined on the teacher distances ``(B, B)``.

    ``hard``: farthest same-id sample (the anchor itself excluded unless it is alone) and the k nearest
    other-id samples. ``random``: a uniformly random positive and k random negatives (mining ablation).
    """
    b = pids.numel()
    same = pids[:, None] == pids[None]
    eye = torch.eye(b, dtype=torch.bool, device=pids.device)
    pos_mask = same & ~eye
    pos_mask = torch.where(pos_mask.any(1, keepdim=True), pos_mask, eye)  # a lone sample is its own positive
    neg_mask = ~same
    if int(neg_mask.sum(1).min()) < k:
        raise ValueError(f"TCL: an anchor has fewer than k={k} negatives in the batch")
    if mining == "hard":
        pos = d_teacher.masked_fill(~pos_mask, float("-inf")).argmax(1)
        neg = d_teacher.masked_fill(~neg_mask, float("inf")).topk(k, dim=1, largest=False).indices
    elif mining == "random":
        r = torch.rand(b, b, generator=generator, device="cpu").to(d_teacher.device)
        pos = r.masked_fill(~pos_mask, -1.0).argmax(1)
        neg = r.masked_fill(~neg_mask, -1.0).topk(k, dim=1).indices
    else:
        raise ValueError(f"TCL mining must be 'hard' or 'random', got {mining!r}")
    return pos, neg


def triplet_distribution(d: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, tau: float) -> torch.Tensor:
    """Spec 1.3 step 2: ``log q_i = log_softmax(-[D_ip, D_in1..D_ink] / tau)``, shape ``(B, 1 + k)``."""
    rows = torch.arange(d.shape[0], device=d.device)
    tup = torch.cat([d[rows, pos][:, None], d[rows[:, None], neg]], 1)
    return F.log_softmax(-tup / tau, dim=1)


def tcl_loss(student: torch.Tensor, teacher: torch.Tensor, pids: torch.Tensor, tau: float = 0.1, k: int = 1,
             normalize: bool = True, mining: str = "hard", tau_sq: bool = False,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Triplet Contrast Loss L_TCL(T -> S) (spec 1.3, [REC]).

    Args:
        student: ``(B, D)`` student embeddings (gradients flow here only).
        teacher: ``(B, D')`` teacher embeddings of the same samples (detached inside; D' may differ).
        pids: ``(B,)`` identities of a P x K batch.
        tau: temperature of the triplet distribution; k: negatives per tuple (1 = batch-hard triplet).
        normalize: L2-normalise both embeddings first (removes the teacher/student scale mismatch).
        mining: ``hard`` (on the teacher's distances) or ``random``; tau_sq: multiply by tau^2 (Hinton).
    Returns:
        scalar ``1/B sum_i KL(q^T_i || q^S_i)``.
    """
    teacher = teacher.detach()
    if normalize:
        student, teacher = F.normalize(student, dim=1), F.normalize(teacher, dim=1)
    d_t = pairwise_euclidean(teacher)
    d_s = pairwise_euclidean(student)
    pos, neg = mine_triplets(d_t, pids, k, mining, generator)
    log_qt = triplet_distribution(d_t, pos, neg, tau)
    log_qs = triplet_distribution(d_s, pos, neg, tau)
    loss = (log_qt.exp() * (log_qt - log_qs)).sum(1).mean()
    return loss * tau * tau if tau_sq else loss


def softened_kl(target_logits: torch.Tensor, logits: torch.Tensor, tau: float) -> torch.Tensor:
    """``KL(softmax(z_target / tau) || softmax(z / tau))``, batch mean, target detached. ``(B, C)`` each."""
    log_p = F.log_softmax(target_logits.detach() / tau, 1)
    return (log_p.exp() * (log_p - F.log_softmax(logits / tau, 1))).sum(1).mean()


def mutual_kl(logits_t: torch.Tensor, logits_s: torch.Tensor, tau: float = 10.0,
              tau_sq: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Mutual learning reading A (DML, spec 1.4): ``(L_ML(S), L_ML(T)) = (KL(p_T||p_S), KL(p_S||p_T))``,
    times ``tau^2`` when ``tau_sq`` (Hinton; VKD's KD term): the softened KL shrinks as ``1/tau^2``, so at
    tau = 10 without it the term is about 1e-3 and mutual learning has no effect."""
    scale = tau * tau if tau_sq else 1.0
    return softened_kl(logits_t, logits_s, tau) * scale, softened_kl(logits_s, logits_t, tau) * scale


def vkd_kd(logits_t: torch.Tensor, logits_s: torch.Tensor, tau: float = 10.0) -> torch.Tensor:
    """VKD ``KDL``: ``KL(softmax(z_T/tau) || softmax(z_S/tau)) * tau^2`` (tau = 10 -> x100)."""
    return softened_kl(logits_t, logits_s, tau) * tau * tau


def vkd_simdist(emb_t: torch.Tensor, emb_s: torch.Tensor) -> torch.Tensor:
    """VKD ``SimilarityDistillationLoss``: ``0.5 * MSE`` of the squared-distance matrices (teacher detached)."""
    def sq(x):
        return ((x * x).sum(1, keepdim=True) + (x * x).sum(1)[None] - 2 * x @ x.t()).clamp_min(0)
    return 0.5 * F.mse_loss(sq(emb_s), sq(emb_t.detach()))


def tkp_feature(img_feat: torch.Tensor, frame_feat: torch.Tensor) -> torch.Tensor:
    """TKP ``FeatureBasedTKP``: mean over elements of ``(f_img - f_frame)^2`` summed per row, video side
    detached. ``img_feat, frame_feat (N, D)`` for the same N frames."""
    return ((img_feat - frame_feat.detach()) ** 2).sum(1).mean()


def tkp_distance(img_feat: torch.Tensor, frame_feat: torch.Tensor) -> torch.Tensor:
    """TKP ``SimilarityBasedTKP``: mean of ``(D_img - D_frame)^2`` over frame-level Euclidean matrices."""
    return ((pairwise_euclidean(img_feat) - pairwise_euclidean(frame_feat.detach())) ** 2).mean()
