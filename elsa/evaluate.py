"""Top-1 of a released ELSA-Swin checkpoint (official layout) or one of our runs on a dataset's eval split.

    python -m elsa.evaluate --config elsa/configs/elsa_swin-tiny_8xb128-310e_in1k.yaml \\
        --official /weights/elsa_swin_tiny.pth data.root=/data/imagenet         # README: 82.7
    python -m elsa.evaluate --config elsa/configs/elsa_swin-base_8xb128-310e_in1k.yaml \\
        --official /weights/elsa_swin_base.pth --ema data.root=/data/imagenet   # README: 84.0 (EMA)
    python -m elsa.evaluate --config <cfg> --run runs/.../best.pt                # our engine checkpoint

Protocol (official ``validate.py``): 224 px, crop 0.9, bicubic; here the checkpoint loads strictly.
"""
from __future__ import annotations

import argparse
import sys

import torch

from shared.config import ConfigError, load_config

from .checkpoint import load_official_checkpoint
from .data import build_datasets
from .train import ElsaConfig, build_model, evaluate_top1


def main(argv: list[str] | None = None) -> float:
    p = argparse.ArgumentParser(prog="python -m elsa.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--official", help="released checkpoint (official ELSASwin layout)")
    src.add_argument("--run", help="a checkpoint written by our engine (last.pt / best.pt)")
    p.add_argument("--ema", action="store_true", help="use the EMA weights (state_dict_ema / ema)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value")
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.config, ElsaConfig, args.overrides)
        model = build_model(cfg.model, cfg.data.num_classes)
        if args.official:
            load_official_checkpoint(model, args.official, use_ema=args.ema)
        else:
            state = torch.load(args.run, map_location="cpu", weights_only=True)
            sd = state["ema"] if args.ema else state["model"]
            if args.ema:  # timm ModelEmaV3 state: the wrapped model's keys under 'module.'
                sd = {k.removeprefix("module."): v for k, v in sd.items()}
            model.load_state_dict(sd)
        _, eval_set = build_datasets(cfg.data, cfg.model.img_size)
    except (ConfigError, FileNotFoundError, KeyError, ValueError, RuntimeError) as e:
        print(f"python -m elsa.evaluate: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    top1 = evaluate_top1(model.to(device).eval(), eval_set, cfg.data.eval_batch_size, device)
    print(f"top-1 {top1:.2f} % on {cfg.data.dataset} ({len(eval_set)} images)")
    return top1


if __name__ == "__main__":
    main()
