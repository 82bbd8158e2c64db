"""CDTrans losses (official ``processor/processor_uda.py`` after fix 8ee48d0, issue #9).

Stage A (pretrain):   L = CE_ls(z, y), label smoothing 0.1 (TransReID's CrossEntropyLabelSmooth, which
                      equals ``F.cross_entropy(label_smoothing=eps)``).
Stage B (UDA):        L = CE(z_s, y_s) + CE(z_t, y^_t) + L_dtl,
                      L_dtl = mean_i [ -sum_k softmax(z_st,i)_k log_softmax(z_t,i)_k ].
The teacher (fusion branch z_st) is *not* detached: gradients reach both branches, as the official code.
Before fix 8ee48d0 the branch outputs were unpacked in the wrong order (CE on the fusion branch,
distillation target->fusion); this follows the fixed version.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def pretrain_loss(logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.1) -> torch.Tensor:
    """Label-smoothed cross-entropy: ``(B, C), (B,) -> scalar``."""
    return F.cross_entropy(logits, labels, label_smoothing=smoothing)


def distill_loss(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """Soft cross-entropy from the fusion branch (teacher) to the target branch (student), not detached.

    ``(B, C), (B, C) -> scalar``: ``mean_i sum_k -softmax(teacher)_ik * log_softmax(student)_ik``.
    """
    return torch.sum(-F.softmax(teacher_logits, dim=-1) * F.log_softmax(student_logits, dim=-1), dim=-1).mean()


def uda_loss(out: dict[str, tuple[torch.Tensor, ...]], source_labels: torch.Tensor, pseudo_labels: torch.Tensor,
             fusion: bool = True, distill_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """Stage-B loss on the three-branch output of :meth:`CDTransModel.forward_three`.

    ``fusion=False`` is the self-training ablation: the same pairs, ``CE_s + CE_t``, no distillation.
    Returns the total as ``loss`` and each term by name.
    """
    ce_s = F.cross_entropy(out["source"][0], source_labels)
    ce_t = F.cross_entropy(out["target"][0], pseudo_labels)
    losses = {"ce_source": ce_s, "ce_target": ce_t}
    total = ce_s + ce_t
    if fusion:
        dtl = distill_loss(out["fusion"][0], out["target"][0])
        losses["distill"] = dtl
        total = total + distill_weight * dtl
    losses["loss"] = total
    return losses
