"""3D human pose metrics: MPJPE (Protocol #1), P-MPJPE (#2), N-MPJPE, per-action averaging, PCK, AUC.

Conventions (as VideoPose3D ``common/loss.py``): poses are arrays ``(..., J, 3)`` in millimetres; every
leading axis (batch, frames) indexes one "sample" (one pose); alignment in P-/N-MPJPE is per sample.
Inputs are torch tensors or numpy arrays; the computation runs in float64 numpy and returns Python
floats (``reduction="mean"``) or a per-sample array ``(...)`` (``reduction="none"``, the mean over joints
of each pose, the input for :func:`mean_per_action`).

Protocol traps:
- Human3.6M numbers are *action-wise* averages: mean over all frames of an action, then the unweighted
  mean of the 15 action means (:func:`mean_per_action`), not the mean over all frames.
- Root alignment (subtracting the pelvis) is the caller's job for Protocol #1; P-MPJPE and N-MPJPE
  re-align anyway.
- MPI-INF-3DHP's MATLAB script counts a joint as correct when its error is strictly ``< threshold`` and
  evaluates a 14-joint subset; slice the joints before calling :func:`pck` / :func:`auc`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._common import to_numpy

DEFAULT_AUC_THRESHOLDS = np.linspace(0.0, 150.0, 31)  # 0:5:150 mm, mpii_compute_3d_pck.m


def _pair(pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    p = to_numpy(pred, np.float64)
    t = to_numpy(target, np.float64)
    if p.shape != t.shape:
        raise ValueError(f"pred {p.shape} and target {t.shape} differ in shape")
    if p.ndim < 2 or p.shape[-1] != 3:
        raise ValueError(f"expected poses (..., J, 3), got {p.shape}")
    return p, t


def _reduce(per_sample: np.ndarray, reduction: str) -> float | np.ndarray:
    if reduction == "mean":
        return float(per_sample.mean())
    if reduction == "none":
        return per_sample
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def joint_errors(pred: Any, target: Any) -> np.ndarray:
    """Euclidean error of every joint, ``(..., J)`` from ``(..., J, 3)``, same unit as the input."""
    p, t = _pair(pred, target)
    return np.linalg.norm(p - t, axis=-1)


def mpjpe(pred: Any, target: Any, reduction: str = "mean") -> float | np.ndarray:
    """Protocol #1, MPJPE: mean Euclidean distance between predicted and true joints, no alignment.

    Args:
        pred, target: ``(..., J, 3)`` in mm.
        reduction: ``"mean"`` -> float over all poses and joints; ``"none"`` -> ``(...)`` per pose.
    """
    return _reduce(joint_errors(pred, target).mean(axis=-1), reduction)


def procrustes_align(pred: Any, target: Any) -> np.ndarray:
    """Similarity-align each predicted pose onto its target (rotation, uniform scale, translation).

    Orthogonal Procrustes on centred, unit-norm poses as VideoPose3D's ``p_mpjpe``: H = X0^T Y0,
    R = V U^T from the SVD, with the reflection fix (flip the last singular vector when det R < 0), scale
    = trace(S) * |X0| / |Y0|. Returns the aligned prediction ``(..., J, 3)``.
    """
    p, t = _pair(pred, target)
    shape = p.shape
    Y = p.reshape(-1, shape[-2], 3)  # predicted
    X = t.reshape(-1, shape[-2], 3)  # target
    mu_x = X.mean(axis=1, keepdims=True)
    mu_y = Y.mean(axis=1, keepdims=True)
    X0, Y0 = X - mu_x, Y - mu_y
    norm_x = np.sqrt((X0**2).sum(axis=(1, 2), keepdims=True))
    norm_y = np.sqrt((Y0**2).sum(axis=(1, 2), keepdims=True))
    # A degenerate pose (all joints at one point) has no orientation: avoid 0/0, scale then becomes 0.
    X0 = X0 / np.where(norm_x > 0, norm_x, 1.0)
    Y0 = Y0 / np.where(norm_y > 0, norm_y, 1.0)
    H = np.matmul(X0.transpose(0, 2, 1), Y0)
    U, s, Vt = np.linalg.svd(H)
    V = Vt.transpose(0, 2, 1)
    R = np.matmul(V, U.transpose(0, 2, 1))
    # Avoid improper rotations (reflections), i.e. det(R) = -1, exactly as VideoPose3D does.
    sign_det = np.sign(np.linalg.det(R))
    sign_det[sign_det == 0] = 1.0
    V[:, :, -1] *= sign_det[:, None]
    s[:, -1] *= sign_det
    R = np.matmul(V, U.transpose(0, 2, 1))
    scale = s.sum(axis=1)[:, None, None] * norm_x / np.where(norm_y > 0, norm_y, 1.0)
    trans = mu_x - scale * np.matmul(mu_y, R)
    return (scale * np.matmul(Y, R) + trans).reshape(shape)


def p_mpjpe(pred: Any, target: Any, reduction: str = "mean") -> float | np.ndarray:
    """Protocol #2, P-MPJPE: MPJPE after per-pose Procrustes alignment (rotation, scale, translation).

    Args:
        pred, target: ``(..., J, 3)`` in mm; each pose is aligned to its own target.
        reduction: ``"mean"`` -> float; ``"none"`` -> ``(...)`` per pose.
    """
    _, t = _pair(pred, target)
    return mpjpe(procrustes_align(pred, target), t, reduction)


def n_mpjpe(pred: Any, target: Any, reduction: str = "mean") -> float | np.ndarray:
    """N-MPJPE (VideoPose3D's scale-normalised MPJPE): MPJPE after a per-pose optimal scale only.

    s = sum_j <p_j, g_j> / sum_j |p_j|^2 (least-squares scale over the joints of one pose); no rotation or
    translation. Args and reduction as :func:`mpjpe`.
    """
    p, t = _pair(pred, target)
    num = (p * t).sum(axis=(-2, -1), keepdims=True)
    den = (p * p).sum(axis=(-2, -1), keepdims=True)
    scale = num / np.where(den > 0, den, 1.0)
    return mpjpe(scale * p, t, reduction)


def mean_per_action(
    errors: Any, actions: Sequence[str], merge_subactions: bool = False
) -> tuple[float, dict[str, float]]:
    """Human3.6M action-wise averaging: mean error per action, then the unweighted mean over actions.

    Args:
        errors: per-sample errors ``(N,)`` (e.g. ``mpjpe(..., reduction="none")`` flattened).
        actions: ``N`` action names, one per sample.
        merge_subactions: keep only the name before the first space, so "Walking 1" and "Walking" pool
            into "Walking" (15 actions on H36M; MHFormer/VideoPose3D pool sub-sequences and cameras).

    Returns:
        ``(mean over actions, {action: mean over its samples})``, actions in first-seen order.
    """
    err = to_numpy(errors, np.float64).reshape(-1)
    names = [str(a).split(" ")[0] if merge_subactions else str(a) for a in actions]
    if len(names) != err.shape[0]:
        raise ValueError(f"{err.shape[0]} errors but {len(names)} action names")
    if not names:
        raise ValueError("empty input: per-action mean is undefined")
    order = list(dict.fromkeys(names))
    index = {a: i for i, a in enumerate(order)}
    ids = np.fromiter((index[a] for a in names), dtype=np.int64, count=len(names))
    sums = np.bincount(ids, weights=err, minlength=len(order))
    counts = np.bincount(ids, minlength=len(order))
    per_action = {a: float(sums[i] / counts[i]) for i, a in enumerate(order)}
    return float(np.mean(list(per_action.values()))), per_action


def pck(pred: Any, target: Any, threshold: float = 150.0) -> float:
    """3D PCK in percent: share of joints whose Euclidean error is strictly below ``threshold`` mm.

    As MPI-INF-3DHP's ``mpii_compute_3d_pck.m`` (``error < 150``), pooled over every joint of every pose.
    Args: ``pred, target`` ``(..., J, 3)`` in mm.
    """
    return float(100.0 * np.mean(joint_errors(pred, target) < threshold))


def auc(pred: Any, target: Any, thresholds: Any = DEFAULT_AUC_THRESHOLDS) -> float:
    """Area under the 3D PCK curve in percent: mean PCK over ``thresholds`` (default 0:5:150 mm, 31 values).

    As MPI-INF-3DHP's evaluation (mean of the PCK curve, not a trapezoid integral).
    """
    err = np.sort(joint_errors(pred, target).reshape(-1))
    thr = to_numpy(thresholds, np.float64).reshape(-1)
    below = np.searchsorted(err, thr, side="left")  # number of errors strictly below each threshold
    return float(100.0 * np.mean(below / err.shape[0]))
