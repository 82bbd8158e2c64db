"""Two-way center-aware labelling: the pairs CDTrans trains its triple branch on (spec section 4).

Official code: ``processor/processor_uda.py`` (``update_feat``, ``compute_knn_idx``, ``obtain_label``,
``generate_new_dataset``). Run at epochs 1, 11, 21, 31 (every ``update_every`` epochs):

1. Features ``f = BNNeck(CLS)`` of the *target branch* (plain self-attention, eval mode) for every source
   and target image; ``F = f / (||f|| + 1e-8)``.
2. ``S = Fs Ft^T``; for each source s its nearest target ``t*(s) = argmax_t S``; for each target t its
   nearest source ``s*(t) = argmax_s S`` (top-1).
3. Center-aware (SHOT) pseudo labels for the target: ``g = [f, 1] / ||[f, 1]||``,
   ``c_k = sum_t p_tk g_t / (sum_t p_tk + 1e-8)`` over the label set (classes that are some sample's argmax),
   ``y^_t = argmin_k cosdist(g_t, c_k)``; then one hard re-centring round.
4. Pairs: ``{(s*(t), t) : y_s*(t) = y^_t}`` (target loop, target order) followed by
   ``{(s, t*(s)) : y_s = y^_t*(s)}`` (source loop, source order); mutual neighbours appear twice.

Deliberate deviation: in the official ``obtain_label`` a label-set class that gets no member in the first
round has a zero second-round centre, whose cosine distance is NaN, and ``argmin`` then hands that class to
every target (label collapse). Here empty centres are skipped (``skip_empty_centres=True``).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch


def l2_normalise(f: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``f / (||f|| + eps)`` row-wise, as ``update_feat``."""
    return f / (f.norm(p=2, dim=1, keepdim=True) + eps)


def nearest_neighbours(feat_s: torch.Tensor, feat_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-1 neighbours on cosine similarity of L2-normalised features.

    Args:
        feat_s: (Ns, D) source BN-neck features. feat_t: (Nt, D) target BN-neck features.
    Returns:
        ``s2t`` (Ns,): nearest target of each source; ``t2s`` (Nt,): nearest source of each target.
    """
    sim = l2_normalise(feat_s.float()) @ l2_normalise(feat_t.float()).T
    return sim.argmax(dim=1), sim.argmax(dim=0)


def center_aware_pseudo_labels(feat: torch.Tensor, logits: torch.Tensor, rounds: int = 1,
                               skip_empty_centres: bool = True) -> np.ndarray:
    """SHOT-style pseudo labels (``obtain_label``), computed in float64.

    Args:
        feat: (N, D) target BN-neck features. logits: (N, C) target-branch logits.
        rounds: hard re-centring rounds after the soft one (official: 1).
        skip_empty_centres: drop label-set classes left without members instead of letting their zero
            centre turn every distance into NaN (the official code's collapse).
    Returns:
        (N,) int64 pseudo labels.
    """
    prob = torch.softmax(logits.double(), dim=1).numpy()
    g = torch.cat([feat.double(), torch.ones(len(feat), 1, dtype=torch.float64)], dim=1)
    g = (g / g.norm(p=2, dim=1, keepdim=True)).numpy()
    num_classes = prob.shape[1]
    labelset = np.flatnonzero(np.bincount(prob.argmax(1), minlength=num_classes) > 0)

    def assign(weights: np.ndarray, classes: np.ndarray) -> np.ndarray:
        centres = weights.T @ g / (1e-8 + weights.sum(axis=0)[:, None])
        c = centres[classes]
        if skip_empty_centres:
            keep = np.linalg.norm(c, axis=1) > 0
            classes, c = classes[keep], c[keep]
        cos = (g @ c.T) / (np.linalg.norm(g, axis=1, keepdims=True) * np.linalg.norm(c, axis=1)[None])
        return classes[np.argmin(1.0 - cos, axis=1)]

    pred = assign(prob, labelset)
    for _ in range(rounds):
        pred = assign(np.eye(num_classes)[pred], labelset)
    return pred.astype(np.int64)


@dataclass
class PairSet:
    """Training pairs: ``source_idx``, ``target_idx`` (P,), with the source label and target pseudo label."""

    source_idx: torch.Tensor
    target_idx: torch.Tensor
    source_label: torch.Tensor
    pseudo_label: torch.Tensor

    def __len__(self) -> int:
        return len(self.source_idx)

    def precision(self, target_true: torch.Tensor) -> float:
        """Share of pairs whose true target label equals the source label (percent)."""
        if len(self) == 0:
            return float("nan")
        return 100.0 * float((target_true[self.target_idx] == self.source_label).float().mean())

    def state(self) -> dict[str, torch.Tensor]:
        return {"source_idx": self.source_idx, "target_idx": self.target_idx,
                "source_label": self.source_label, "pseudo_label": self.pseudo_label}


def build_pairs(source_labels: torch.Tensor, pseudo_labels: torch.Tensor, s2t: torch.Tensor,
                t2s: torch.Tensor, use_filter: bool = True, two_way: bool = True) -> PairSet:
    """``generate_new_dataset``: the target loop's pairs, then the source loop's, optionally filtered to
    label-consistent pairs (``y_s == y^_t``). ``two_way=False`` keeps only the target loop (one-way)."""
    pseudo_labels = torch.as_tensor(pseudo_labels)
    t_idx = torch.arange(len(t2s))
    s_of_t = t2s
    keep_t = source_labels[s_of_t] == pseudo_labels[t_idx] if use_filter else torch.ones_like(t_idx, dtype=bool)
    src = [s_of_t[keep_t]]
    tgt = [t_idx[keep_t]]
    if two_way:
        s_idx = torch.arange(len(s2t))
        keep_s = source_labels[s_idx] == pseudo_labels[s2t] if use_filter else torch.ones_like(s_idx, dtype=bool)
        src.append(s_idx[keep_s])
        tgt.append(s2t[keep_s])
    s_all, t_all = torch.cat(src), torch.cat(tgt)
    return PairSet(s_all, t_all, source_labels[s_all], pseudo_labels[t_all])


@dataclass
class Refresh:
    """One labelling round: the training pairs and what they were built from."""

    pairs: PairSet
    s2t: torch.Tensor  # (Ns,) nearest target of each source
    t2s: torch.Tensor  # (Nt,) nearest source of each target
    pseudo: torch.Tensor  # (Nt,) center-aware pseudo labels
    fell_back: bool  # the filter kept fewer than one batch: unfiltered pairs were used


def two_way_center_aware_pairs(feat_s: torch.Tensor, feat_t: torch.Tensor, logits_t: torch.Tensor,
                               source_labels: torch.Tensor, min_pairs: int, use_filter: bool = True,
                               skip_empty_centres: bool = True) -> Refresh:
    """The whole refresh: neighbours, pseudo labels, filtered union; with the issue-#14 guard.

    If fewer than ``min_pairs`` (one batch) survive the filter -- the official code then builds an empty
    loader and crashes -- fall back to the unfiltered two-way pairs and warn.
    """
    s2t, t2s = nearest_neighbours(feat_s, feat_t)
    pseudo = torch.from_numpy(center_aware_pseudo_labels(feat_t, logits_t, skip_empty_centres=skip_empty_centres))
    pairs = build_pairs(source_labels, pseudo, s2t, t2s, use_filter=use_filter)
    fell_back = len(pairs) < min_pairs
    if fell_back:
        warnings.warn(f"only {len(pairs)} label-consistent pairs (< one batch of {min_pairs}); "
                      "falling back to the unfiltered two-way pairs (official code crashes here, issue #14)",
                      stacklevel=2)
        pairs = build_pairs(source_labels, pseudo, s2t, t2s, use_filter=False)
    return Refresh(pairs, s2t, t2s, pseudo, fell_back)
