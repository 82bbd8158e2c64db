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

import torch

from .scoring import evaluate_windows, predict_centre, score_3dhp, score_h36m


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


__all__ = ["evaluate_windows", "format_table", "main", "predict_centre", "score_3dhp", "score_h36m"]

if __name__ == "__main__":
    raise SystemExit(main())
