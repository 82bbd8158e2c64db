"""Evaluate a MotionRGBD checkpoint (a released official ``*.pth.tar`` or our best.pt / last.pt) on a config's
validation list: top-1 / top-5 % per modality and fused.

    python -m motion_rgbd.evaluate --config motion_rgbd/configs/motionrgbd_i3d-dsn_8xb4-100e_nvgesture-depth.yaml \\
        --checkpoint /w/NvGesture-depth.pth.tar data.root=/data/NvGesture [--out eval.json]
    python -m motion_rgbd.evaluate --config motion_rgbd/configs/capf_i3d-dsn_8xb4-100e_nvgesture.yaml \\
        --checkpoint runs/motion_rgbd/nvgesture-capf/best.pt data.root=/data/NvGesture

Protocol (fixed in advance; the official script picks the best of 4 heads / 3 fused heads on the test set):
every video of ``data.valid_list`` once, in order (no padding sampler); 64 segment-middle frames; the
config's test crop; the DTN's middle frame per segment. Unimodal config: the net's z (max over the 16/32/48
branch logits), reported under its modality. Fusion config: ``fused`` = y + r + d (the README's RGB-D
column), ``posterior`` = y, ``rgb`` = r, ``depth`` = d.
"""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from shared.backbones import CheckpointMismatchError
from shared.cli import evaluate_parser, finish_evaluation, parse_evaluate_args
from shared.config import load_config
from shared.errors import cli_errors

from .model import load_official_checkpoint, read_checkpoint
from .train import MotionConfig, MotionTask, _set_epoch


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """% of rows whose label is among the k largest logits (k capped at the number of classes)."""
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return 100.0 * float((top == labels[:, None]).any(1).float().mean())


@torch.no_grad()
def predict(task: MotionTask, model: torch.nn.Module, device: torch.device, workers: int = 0
            ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Logits per head over the validation list, in list order, and the labels."""
    model.eval()
    fusion = task.cfg.stage == "fusion"
    heads: dict[str, list[torch.Tensor]] = {}
    ys = []
    loader = DataLoader(task._dataset(False), batch_size=task.cfg.data.eval_batch_size, shuffle=False,
                        num_workers=workers)
    for x, g, y in loader:
        if fusion:
            (yy, r, d), _ = model(x[0].to(device), x[1].to(device), g[0].to(device), g[1].to(device))
            out = {"fused": yy + r + d, "posterior": yy, "rgb": r, "depth": d}
        else:
            out = {task.cfg.data.modality: model(x.to(device), g.to(device))[0][0]}
        for k, v in out.items():
            heads.setdefault(k, []).append(v.float().cpu())
        ys.append(y)
    return {k: torch.cat(v) for k, v in heads.items()}, torch.cat(ys)


def main(argv: list[str] | None = None) -> dict:
    prog = "python -m motion_rgbd.evaluate"
    parser = evaluate_parser(prog, __doc__, "official checkpoint.pth.tar / model_best.pth.tar, or our "
                             "best.pt / last.pt")
    args = parse_evaluate_args(parser, argv)
    with cli_errors(prog):
        cfg = load_config(args.config, MotionConfig, args.overrides + ["model.init_checkpoint=",
                                                                       "model.rgb_checkpoint=",
                                                                       "model.depth_checkpoint="])
        task = MotionTask(cfg)
        model = task.build_model()
        try:
            load_official_checkpoint(model, read_checkpoint(args.checkpoint), required_prefix="")
        except CheckpointMismatchError as e:  # name the file, not "<state dict>"
            raise CheckpointMismatchError(str(e).replace("<state dict>", str(args.checkpoint))) from None
        _set_epoch(model, cfg.engine.epochs)  # final sharpness tau (a common scale: ranks unchanged)
        dev = cfg.engine.device
        device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if dev == "auto" else dev)
        logits, y = predict(task, model.to(device), device, cfg.engine.num_workers)
        d = cfg.data
        result: dict = {"dataset": d.name, "list": d.valid_list, "videos": len(y), "stage": cfg.stage,
                        "config": str(args.config), "checkpoint": str(args.checkpoint)}
        for head, lg in logits.items():
            result[f"{head}_top1"], result[f"{head}_top5"] = topk_accuracy(lg, y, 1), topk_accuracy(lg, y, 5)
        text = f"{d.name} {d.valid_list} ({len(y)} videos): " + " | ".join(
            f"{h} top-1 {result[f'{h}_top1']:.2f} top-5 {result[f'{h}_top5']:.2f}" for h in logits)
        return finish_evaluation(result, args.out, text)


if __name__ == "__main__":
    main()
