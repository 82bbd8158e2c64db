"""Image-to-video evaluation (spec 4): first-frame queries, N-frame tracklet gallery, cosine, trapezoidal AP.

Protocols reported (TCL's own choice is unknown [REC: report both]):
- ``i2v``: the student encodes queries and gallery (VKD, issue #8);
- ``i2v_tkp``: student queries against a teacher-encoded gallery (TKP);
- ``v2v``: the teacher on whole query and gallery tracklets; ``i2v_teacher``: the teacher on I2V.
Junk = same pid and same camera; the MARS gallery is augmented with the queries (``augment=True``).
Each protocol gives mAP, rank-1/5/10 and mINP (%).

    python -m tcl_i2v.evaluate --config tcl_i2v/configs/tcl-ml_resnet50_1xb48-500e_mars.yaml \\
        --checkpoint runs/tcl_i2v/mars/tcl-ml/last.pt data.root=/data/mars [--out eval.json]

``--checkpoint``: our engine checkpoint (teacher and student: every protocol), or a released VKD file
(``chk_end``/``chk_di_1``), loaded into the teacher for a ``v2v`` config and into the student otherwise
(with ``kd.teacher_ckpt=...`` the teacher is loaded too and the TKP protocol is reported).
"""
from __future__ import annotations

import torch

from .scoring import evaluate_i2v, extract

PROTOCOLS = ("i2v", "i2v_tkp", "v2v", "i2v_teacher")


def format_table(metrics: dict[str, float]) -> str:
    """One row per protocol: mAP, R1, R5, R10, mINP (%)."""
    keys = ("mAP", "rank1", "rank5", "rank10", "mINP")
    lines = [f"{'protocol':<12}" + "".join(f"{k:>8}" for k in ("mAP", "R1", "R5", "R10", "mINP"))]
    for p in PROTOCOLS:
        if f"{p}/mAP" in metrics:
            lines.append(f"{p:<12}" + "".join(f"{metrics[f'{p}/{k}']:>8.2f}" for k in keys))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, float]:
    from shared.cli import evaluate_parser, finish_evaluation, parse_evaluate_args
    from shared.config import load_config
    from shared.errors import cli_errors

    from .model import load_vkd_checkpoint, read_checkpoint
    from .train import KDTask, TCLConfig

    prog = "python -m tcl_i2v.evaluate"
    parser = evaluate_parser(prog, __doc__, "our last.pt/best.pt (teacher + student) or a released VKD "
                             "chk_end/chk_di_1")
    args = parse_evaluate_args(parser, argv)
    with cli_errors(prog):
        cfg = load_config(args.config, TCLConfig, args.overrides + ["kd.student_init=scratch"])
        task = KDTask(cfg)
        model = task.build_model()
        state = read_checkpoint(args.checkpoint)
        if isinstance(state, dict) and "model" in state:  # our engine checkpoint of a TeacherStudent
            model.load_state_dict(state["model"])
        else:
            load_vkd_checkpoint(model.teacher if cfg.kd.method == "v2v" else model.student, args.checkpoint)
        device = torch.device("cuda" if torch.cuda.is_available() and cfg.engine.device != "cpu" else "cpu")
        task.device = device
        metrics = task.evaluate(model.to(device))
        return finish_evaluation(metrics, args.out, format_table(metrics))


__all__ = ["PROTOCOLS", "evaluate_i2v", "extract", "format_table", "main"]

if __name__ == "__main__":
    main()
