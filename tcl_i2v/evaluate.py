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
from torch import nn

from shared.metrics.reid import reid_evaluate

from .data import Tracklet, augment_gallery, chunk_indices, read_frames


@torch.no_grad()
def extract(net: nn.Module, tracks: list[Tracklet], n_frames: int, transform=None, batch: int = 64,
            device: str | torch.device = "cpu") -> torch.Tensor:
    """``(len(tracks), D)`` pre-BN embeddings; ``n_frames = 1`` -> the first frame (I2V query), else the
    first frame of each of ``n_frames`` equal chunks, averaged (VKD gallery)."""
    was = net.training
    net.eval()
    feats = []
    for s in range(0, len(tracks), batch):
        clips = [read_frames(t.frames, chunk_indices(len(t.frames), n_frames, None) if n_frames > 1 else [0],
                             transform) for t in tracks[s:s + batch]]
        feats.append(net(torch.stack(clips).to(device))["emb"].float().cpu())
    net.train(was)
    return torch.cat(feats)


def _metrics(qf, gf, query, gallery, prefix: str) -> dict[str, float]:
    r = reid_evaluate(qf, gf, [t.pid for t in query], [t.pid for t in gallery], [t.cam for t in query],
                      [t.cam for t in gallery], metric="cosine", ap_mode="trapezoid")
    return {f"{prefix}/{k}": float(r[k]) for k in ("mAP", "rank1", "rank5", "rank10", "mINP")}


def evaluate_i2v(student: nn.Module | None, teacher: nn.Module | None, query: list[Tracklet],
                 gallery: list[Tracklet], n_frames: int = 8, augment: bool = True, transform=None,
                 device: str | torch.device = "cpu") -> dict[str, float]:
    """All protocols the available networks allow, as ``{"<protocol>/<metric>": percent}``."""
    gallery = augment_gallery(query, gallery) if augment else gallery
    out: dict[str, float] = {}
    g_t = None
    if teacher is not None:
        g_t = extract(teacher, gallery, n_frames, transform, device=device)
        out |= _metrics(extract(teacher, query, n_frames, transform, device=device), g_t, query, gallery, "v2v")
        out |= _metrics(extract(teacher, query, 1, transform, device=device), g_t, query, gallery, "i2v_teacher")
    if student is not None:
        q_s = extract(student, query, 1, transform, device=device)
        out |= _metrics(q_s, extract(student, gallery, n_frames, transform, device=device), query, gallery, "i2v")
        if g_t is not None and g_t.shape[1] == q_s.shape[1]:
            out |= _metrics(q_s, g_t, query, gallery, "i2v_tkp")
    return out


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

    from .model import load_vkd_checkpoint
    from .train import KDTask, TCLConfig

    prog = "python -m tcl_i2v.evaluate"
    parser = evaluate_parser(prog, __doc__, "our last.pt/best.pt (teacher + student) or a released VKD "
                             "chk_end/chk_di_1")
    args = parse_evaluate_args(parser, argv)
    with cli_errors(prog):
        cfg = load_config(args.config, TCLConfig, args.overrides + ["kd.student_init=scratch"])
        task = KDTask(cfg)
        model = task.build_model()
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "model" in state:  # our engine checkpoint of a TeacherStudent
            model.load_state_dict(state["model"])
        else:
            load_vkd_checkpoint(model.teacher if cfg.kd.method == "v2v" else model.student, args.checkpoint)
        device = torch.device("cuda" if torch.cuda.is_available() and cfg.engine.device != "cpu" else "cpu")
        task.device = device
        metrics = task.evaluate(model.to(device))
        return finish_evaluation(metrics, args.out, format_table(metrics))


if __name__ == "__main__":
    main()
