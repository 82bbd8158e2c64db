"""The evaluation protocol of MHFormer (official ``main.py``), used by the task (``train.py``) and by the
``evaluate.py`` command (which re-exports it; its own module so that those two do not import each other).

Flip test-time augmentation (predict the input and its horizontal flip, un-flip the second, average), take
the centre frame, set the root to 0, then per action (name before the first space; sub-sequences and the 4
cameras pooled) the mean error, and the unweighted mean of the action means. P1 = MPJPE, P2 = P-MPJPE
(Procrustes), plus N-MPJPE (scale only; not in MHFormer's code). MPI-INF-3DHP: PCK@150 mm, AUC (0:5:150 mm)
and MPJPE over the valid test frames.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from shared.metrics.pose import auc, mean_per_action, mpjpe, n_mpjpe, p_mpjpe, pck

from .data import PoseWindows, flip_pose


@torch.no_grad()
def predict_centre(model: nn.Module, windows: PoseWindows, batch_size: int = 256, flip_test: bool = True,
                   device: torch.device | str = "cpu") -> dict[str, np.ndarray]:
    """Centre-frame predictions with the root zeroed: ``pred`` (with flip TTA when ``flip_test``),
    ``pred_noflip`` (the plain forward pass) and ``target``, each (M, J, 3) in the data's unit."""
    d = windows.data
    root = d.root
    preds, plain, targets = [], [], []
    model.eval()
    for x, y, _ in DataLoader(windows, batch_size=batch_size, shuffle=False):
        x = x.to(device)
        out = model(x)
        c = out.shape[1] // 2  # pad for an N-frame output, 0 for a single-frame one (VideoPose3D)
        p0 = out[:, c]
        p = p0
        if flip_test:
            out_f = flip_pose(model(flip_pose(x, d.kps_left, d.kps_right)), d.joints_left, d.joints_right)
            p = (out + out_f)[:, c] / 2
        for lst, v in ((preds, p), (plain, p0)):
            v = v.clone()
            v[:, root] = 0
            lst.append(v.float().cpu())
        t = y[:, y.shape[1] // 2].clone()
        t[:, root] = 0
        targets.append(t.float())
    cat = lambda xs: torch.cat(xs).numpy()  # noqa: E731
    return {"pred": cat(preds), "pred_noflip": cat(plain), "target": cat(targets)}


def score_h36m(pred: np.ndarray, target: np.ndarray, actions: list[str], scale: float = 1000.0) -> dict:
    """Action-wise MPJPE / P-MPJPE / N-MPJPE in mm (inputs in metres, ``scale`` converts)."""
    p, t = pred * scale, target * scale
    out, per_action = {}, {}
    for name, fn in (("mpjpe", mpjpe), ("p_mpjpe", p_mpjpe), ("n_mpjpe", n_mpjpe)):
        out[name], per_action[name] = mean_per_action(fn(p, t, reduction="none"), actions, merge_subactions=True)
    out["per_action"] = per_action
    return out


def score_3dhp(pred: np.ndarray, target: np.ndarray, scale: float = 1000.0) -> dict:
    """PCK@150 mm, AUC and MPJPE over every scored frame (mm)."""
    p, t = pred * scale, target * scale
    return {"pck": pck(p, t), "auc": auc(p, t), "mpjpe": mpjpe(p, t)}


def evaluate_windows(model: nn.Module, windows: PoseWindows, benchmark: str = "h36m", batch_size: int = 256,
                     flip_test: bool = True, device: torch.device | str = "cpu") -> dict:
    """Flat metrics dict: the benchmark's numbers with flip TTA, and ``*_noflip`` without it."""
    r = predict_centre(model, windows, batch_size, flip_test, device)
    if benchmark == "3dhp":
        s, s0 = score_3dhp(r["pred"], r["target"]), score_3dhp(r["pred_noflip"], r["target"])
    else:
        acts = windows.actions()
        s, s0 = score_h36m(r["pred"], r["target"], acts), score_h36m(r["pred_noflip"], r["target"], acts)
    metrics = {k: v for k, v in s.items() if k != "per_action"}
    metrics.update({f"{k}_noflip": v for k, v in s0.items() if k != "per_action"})
    hard = windows.hard()
    if hard is not None and benchmark != "3dhp":  # embedded data: the ambiguous frames alone, and the rest
        err = mpjpe(r["pred"] * 1000.0, r["target"] * 1000.0, reduction="none")
        metrics["mpjpe_hard"] = float(err[hard].mean()) if hard.any() else float("nan")
        metrics["mpjpe_clean"] = float(err[~hard].mean()) if (~hard).any() else float("nan")
        metrics["hard_fraction"] = float(hard.mean())
    if "per_action" in s:
        metrics["per_action"] = s["per_action"]
    return metrics


__all__ = ["evaluate_windows", "predict_centre", "score_3dhp", "score_h36m"]
