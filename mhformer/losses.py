"""MHFormer's training loss: MPJPE over every frame of the window (official ``mpjpe_cal``).

The official code supervises all N frames (``out_all=1``) against the ground-truth window whose root
joint is set to 0; the predicted root is left unconstrained in training and zeroed at test time.
No velocity or bone-length terms.
"""
from __future__ import annotations

import torch


def zero_root(pose: torch.Tensor, root: int = 0) -> torch.Tensor:
    """(..., J, 3) -> a copy with joint ``root`` set to 0 (the official ``out_target[:, :, 0] = 0``)."""
    pose = pose.clone()
    pose[..., root, :] = 0
    return pose


def mpjpe_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean Euclidean joint error over every batch element, frame and joint.

    Args:
        pred, target: (B, N, J, 3), same unit (metres in training).
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    return torch.linalg.vector_norm(pred - target, dim=-1).mean()
