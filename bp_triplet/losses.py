"""The BP-Triplet loss (reconstructed, spec 3) and the batch-hard triplet baseline.

What the paper states [V]: a triplet loss "from the perspective of Bayesian learning" on source and
pseudo-labelled target samples, which "adjusts the weights of pair-wise samples in intra domain and
inter domain" and "self attends to the hard pairs (hard positive and hard negative pairs)".
Everything below that is not one of those sentences is our reconstruction [R]; each part is a switch.

Reconstruction, for a batch of unit-norm embeddings ``z_i`` with domain ``d_i`` and (pseudo-)label
``y_i``, squared distances ``D_ij = ||z_i - z_j||^2`` in [0, 4]:

* Likelihood of one triplet (a, p, n), ``y_p = y_a != y_n``: Bernoulli "a is closer to p than to n"
  with ``P = sigmoid(gamma (D_an - D_ap - m))`` (Bradley-Terry / BPR ranking likelihood).
* MAP with a Gaussian prior on the weights: weight decay plus the weighted negative log-likelihood::

      L_BP = 1 / sum(w) * sum_{a,p,n} w_apn * softplus(gamma (D_ap - D_an + m))          (spec eq. L_BP)

* Importance weights ``w_apn = pi(d_a,d_p) pi(d_a,d_n) h_ap h_an c_a c_p c_n``:
  - domain prior ``pi``: ``alpha_inter`` for a cross-domain pair, ``alpha_intra`` for a same-domain one;
  - hard-pair attention ``h_ap = |P(a)| softmax_{p in P(a)}(D_ap / tau)`` (far positives) and
    ``h_an = |N(a)| softmax_{n in N(a)}(-D_an / tau)`` (near negatives), mean 1 per anchor;
    ``tau = None`` (infinity) switches it off;
  - confidence ``c_i``: 1 for source, the pseudo-label's max-softmax for target (``confidence=False``: 1).

With ``alpha_inter = alpha_intra``, ``tau = None`` and ``confidence = False`` every triplet weighs the
same: that is the ``plain_triplet`` arm, which isolates the weighting.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def pairwise_sq_dist(z: torch.Tensor) -> torch.Tensor:
    """``(B, D) -> (B, B)`` squared Euclidean distances, clamped at 0 against round-off."""
    sq = z.pow(2).sum(1)
    return (sq[:, None] + sq[None, :] - 2.0 * z @ z.t()).clamp(min=0.0)


def _masked_attention(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``|mask row| * softmax`` of ``scores`` over the True entries of each row; 0 elsewhere."""
    s = scores.masked_fill(~mask, float("-inf"))
    att = torch.softmax(s, dim=1)
    att = torch.nan_to_num(att, nan=0.0)  # rows without any True entry
    return att * mask.sum(1, keepdim=True).to(att.dtype)


def bp_triplet_weights(dist: torch.Tensor, labels: torch.Tensor, domains: torch.Tensor,
                       confidence: torch.Tensor | None = None, alpha_intra: float = 0.5,
                       alpha_inter: float = 1.0, tau: float | None = 0.1) -> torch.Tensor:
    """``w_apn``, ``(B, B, B)`` with index order (anchor, positive, negative); 0 for invalid triplets.

    ``dist (B, B)`` squared distances (detach them for weights that carry no gradient),
    ``labels (B,)``, ``domains (B,)`` (0 source, 1 target), ``confidence (B,)`` or ``None``.
    """
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos, neg = same & ~eye, ~same
    cross = domains[:, None] != domains[None, :]
    prior = torch.where(cross, torch.full_like(dist, alpha_inter), torch.full_like(dist, alpha_intra))
    if tau is None:
        h_ap, h_an = pos.to(dist.dtype), neg.to(dist.dtype)
    else:
        h_ap = _masked_attention(dist / tau, pos)
        h_an = _masked_attention(-dist / tau, neg)
    w_ap, w_an = prior * h_ap, prior * h_an
    w = w_ap[:, :, None] * w_an[:, None, :]
    if confidence is not None:
        c = confidence.to(dist.dtype)
        w = w * c[:, None, None] * c[None, :, None] * c[None, None, :]
    return w


def bp_triplet_loss(z: torch.Tensor, labels: torch.Tensor, domains: torch.Tensor,
                    confidence: torch.Tensor | None = None, gamma: float = 10.0, margin: float = 0.1,
                    alpha_intra: float = 0.5, alpha_inter: float = 1.0, tau: float | None = 0.1,
                    detach_weights: bool = True) -> torch.Tensor:
    """``L_BP`` (module docstring). Samples with ``labels < 0`` (unconfident target) are left out.

    Args:
        z: ``(B, D)`` embeddings (unit norm in our use; the loss does not normalise them itself).
        labels: ``(B,)`` true source labels and target pseudo-labels, -1 for "no label".
        domains: ``(B,)`` 0 source, 1 target.
        confidence: ``(B,)`` ``c_i`` (1 for source), or ``None`` for all ones.
        gamma, margin: scale and margin of the ranking likelihood.
        alpha_intra, alpha_inter, tau: the weights (``tau=None``: no hard-pair attention).
        detach_weights: weights act as fixed importances (a prior), with no gradient of their own [R].

    Returns a scalar; 0 (still attached to ``z``) when the batch holds no valid triplet, so anchors
    without a positive or a negative are skipped, never divided by zero.
    """
    keep = labels >= 0
    if confidence is not None:
        confidence = confidence[keep]
    z, labels, domains = z[keep], labels[keep], domains[keep]
    dist = pairwise_sq_dist(z)
    w = bp_triplet_weights(dist.detach() if detach_weights else dist, labels, domains, confidence,
                           alpha_intra, alpha_inter, tau)
    total = w.sum()
    if total <= 0:
        return z.sum() * 0.0
    nll = F.softplus(gamma * (dist[:, :, None] - dist[:, None, :] + margin))  # (a, p, n)
    return (w * nll).sum() / total


def batch_hard_triplet_loss(z: torch.Tensor, labels: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """Batch-hard triplet (Hermans et al. 2017): per anchor the farthest positive and nearest negative,
    ``mean_a max(0, m + ||z_a - z_p*|| - ||z_a - z_n*||)`` on Euclidean distances; ``labels < 0`` left
    out; anchors without a positive or a negative skipped. The SRADA-style baseline (spec 3)."""
    keep = labels >= 0
    z, labels = z[keep], labels[keep]
    dist = pairwise_sq_dist(z).clamp(min=1e-12).sqrt()
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=z.device)
    pos, neg = same & ~eye, ~same
    valid = pos.any(1) & neg.any(1)
    if not valid.any():
        return z.sum() * 0.0
    d_ap = dist.masked_fill(~pos, float("-inf")).amax(1)
    d_an = dist.masked_fill(~neg, float("inf")).amin(1)
    return F.relu(margin + d_ap - d_an)[valid].mean()
