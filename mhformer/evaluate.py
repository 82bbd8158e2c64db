"""Evaluate MHFormer (a run's checkpoint or a released ``model_XXXX.pth``) on Human3.6M or MPI-INF-3DHP.

    python -m mhformer.evaluate --config mhformer/configs/mhformer_351f_1xb128-19e_h36m-cpn.yaml \\
        --checkpoint checkpoint/pretrained/351/model_4294.pth data.root=/data/h36m

Protocol (official ``main.py``): flip test-time augmentation (predict the input and its horizontal flip,
un-flip the second, average), take the centre frame, set the root to 0, then per action (name before the
first space; sub-sequences and the 4 cameras pooled) the mean error, and the unweighted mean of the
action means. P1 = MPJPE, P2 = P-MPJPE (Procrustes), plus N-MPJPE (scale only; not in MHFormer's code).
MPI-INF-3DHP: PCK@150 mm, AUC (0:5:150 mm) and MPJPE over the valid test frames.
``--out`` writes every number (per action too) as strict JSON (an empty subset's mean is ``null``).
"""
from __future__ import annotations

from pathlib import Path

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


def format_table(metrics: dict) -> str:
    """The official print-out: one row per action (P1, P2, N-MPJPE in mm) and the action-wise average."""
    pa = metrics.get("per_action")
    if not pa:
        return "  ".join(f"{k} {v:.2f}" for k, v in metrics.items() if isinstance(v, float))
    lines = [f"{'Action':<14}{'P1 mm':>9}{'P2 mm':>9}{'N mm':>9}"]
    for a in pa["mpjpe"]:
        lines.append(f"{a:<14}{pa['mpjpe'][a]:>9.2f}{pa['p_mpjpe'][a]:>9.2f}{pa['n_mpjpe'][a]:>9.2f}")
    lines.append(f"{'Average':<14}{metrics['mpjpe']:>9.2f}{metrics['p_mpjpe']:>9.2f}{metrics['n_mpjpe']:>9.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from shared.cli import evaluate_parser, finish_evaluation, parse_evaluate_args
    from shared.config import load_config
    from shared.errors import cli_errors

    from .model import load_official_checkpoint
    from .train import MHFormerConfig, MHFormerTask

    prog = "python -m mhformer.evaluate"
    parser = evaluate_parser(prog, __doc__, "released model_XXXX.pth (plain state_dict) or an engine checkpoint "
                             "(best.pt/last.pt)")
    args = parse_evaluate_args(parser, argv)
    try:
        with cli_errors(prog):
            cfg = load_config(args.config, MHFormerConfig, args.overrides)
            task = MHFormerTask(cfg)
            model = task.build_model()
            load_official_checkpoint(model, Path(args.checkpoint))
            device = torch.device("cuda" if torch.cuda.is_available() and cfg.engine.device != "cpu" else "cpu")
            metrics = evaluate_windows(model.to(device), task.test_windows(), cfg.data.benchmark,
                                       cfg.engine.batch_size, cfg.data.flip_test, device)
            finish_evaluation(metrics, args.out, format_table(metrics))
    except SystemExit as e:  # cli_errors printed the one line
        return int(e.code or 0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
