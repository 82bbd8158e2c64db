"""Top-1 of a released ELSA-Swin checkpoint (official layout) or one of our runs on a dataset's eval split.

    python -m elsa.evaluate --config elsa/configs/elsa_swin-tiny_8xb128-310e_in1k.yaml \\
        --checkpoint /weights/elsa_swin_tiny.pth data.root=/data/imagenet         # README: 82.7
    python -m elsa.evaluate --config elsa/configs/elsa_swin-base_8xb128-310e_in1k.yaml \\
        --checkpoint /weights/elsa_swin_base.pth --ema data.root=/data/imagenet   # README: 84.0 (EMA)
    python -m elsa.evaluate --config <cfg> --checkpoint runs/.../best.pt --out eval.json   # our engine run

``--checkpoint`` takes a released file (official ``ELSASwin`` layout) or our engine's ``last.pt``/``best.pt``
and tells them apart by their keys (``--official`` and ``--run`` are accepted for it).
Protocol (official ``validate.py``): 224 px, crop 0.9, bicubic; here the checkpoint loads strictly.
"""
from __future__ import annotations

import torch

from shared.cli import evaluate_parser, finish_evaluation, parse_evaluate_args
from shared.config import load_config
from shared.errors import cli_errors

from .checkpoint import engine_state, load_official_checkpoint
from .data import build_datasets
from .train import ElsaConfig, build_model, evaluate_top1


def main(argv: list[str] | None = None) -> dict:
    prog = "python -m elsa.evaluate"
    p = evaluate_parser(prog, __doc__, "released ELSA-Swin file or our last.pt/best.pt", ("--official", "--run"))
    p.add_argument("--ema", action="store_true", help="use the EMA weights (state_dict_ema / ema)")
    args = parse_evaluate_args(p, argv)
    with cli_errors(prog):
        cfg = load_config(args.config, ElsaConfig, args.overrides)
        model = build_model(cfg.model, cfg.data.num_classes)
        state = engine_state(args.checkpoint)
        if state is None:
            load_official_checkpoint(model, args.checkpoint, use_ema=args.ema)
        else:
            sd = state["ema"] if args.ema else state["model"]
            if args.ema:  # timm ModelEmaV3 state: the wrapped model's keys under 'module.'
                sd = {k.removeprefix("module."): v for k, v in sd.items()}
            model.load_state_dict(sd)
        _, eval_set = build_datasets(cfg.data, cfg.model.img_size, cfg.engine.seed)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        top1 = evaluate_top1(model.to(device).eval(), eval_set, cfg.data.eval_batch_size, device)
        metrics = {"top1": top1, "images": len(eval_set)}
        text = f"top-1 {top1:.2f} % on {cfg.data.dataset} ({len(eval_set)} images)"
        return finish_evaluation(metrics, args.out, text)


if __name__ == "__main__":
    main()
