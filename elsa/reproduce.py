"""``make reproduce PAPER=elsa``: Swin window attention vs ELSA vs plain local self-attention (LSA) as the
stage-0 token mixer of a micro Swin on the embedded shifted digits (32x32), every seed.

Rows: ``swin``, ``elsa``, ``lsa``: last-epoch test top-1 (%). Also reported: parameters, seconds per
training step (same process, same machine), and the test-accuracy curve. With ``--data ROOT`` it
launches the ImageNet-1k script instead (``--size tiny|small|base``, ``--gpus``).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from shared.cli import launch_script, parse_seeds, reproduce_dirs, reproduce_parser
from shared.config import load_config
from shared.engine import Trainer
from shared.results import write_summary

from .train import ElsaConfig, ElsaTask

HERE = Path(__file__).resolve().parent
METHODS = ("swin", "elsa", "lsa")
CONFIG = "{}_swin-micro-p4_1xb64-12e_shifted-digits.yaml"
# --quick: the pipeline on 64 cluttered digits (seconds), not a result
QUICK = ["engine.epochs=1", "engine.batch_size=32", "data.dataset=cluttered_digits", "data.n_train=64",
         "data.n_test=32"]


def run_one(method: str, seed: int, run_dir: Path, quick: bool) -> dict:
    """Train one method for one seed; return its per-epoch history, params and seconds per step."""
    overrides = ["logger.progress=false", f"engine.seed={seed}"] + (QUICK if quick else [])
    cfg = load_config(HERE / "configs" / CONFIG.format(method), ElsaConfig, overrides)
    trainer = Trainer(ElsaTask(cfg), cfg, run_dir)
    trainer.fit()
    steps = trainer.global_step
    seconds = sum(h["epoch_seconds"] for h in trainer.history)
    return {"history": trainer.history, "top1": trainer.history[-1]["top1"],
            "params": sum(p.numel() for p in trainer.model.parameters()),
            "s_per_step": seconds / max(steps, 1), "steps": steps}


def main(argv: list[str] | None = None) -> int:
    p = reproduce_parser("elsa", __doc__.split("\n")[0])
    p.add_argument("--size", default="tiny", choices=["tiny", "small", "base"],
                   help="with --data: which ELSA-Swin to train on ImageNet-1k")
    args = p.parse_args(argv)
    if args.data:
        return launch_script(HERE / "scripts" / "imagenet.sh", args.data, args.gpus, {"SIZE": args.size},
                             overrides=args.overrides)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    seeds = parse_seeds(args.seeds)
    out_dir, run_root = reproduce_dirs("elsa", args)
    start = time.time()
    print(f"elsa embedded reproduction: {', '.join(METHODS)} x seeds {seeds} -> {out_dir}", flush=True)
    res: dict[str, list[dict]] = {m: [] for m in METHODS}
    for seed in seeds:
        for m in METHODS:
            r = run_one(m, seed, run_root / f"{m}_seed{seed}", args.quick)
            res[m].append(r)
            print(f"  seed {seed} {m:4s}: top-1 {r['top1']:.2f} %  ({r['s_per_step']:.3f} s/step, "
                  f"{r['params'] / 1e3:.1f}k params)", flush=True)
    wall = time.time() - start
    rows = {m: [r["top1"] for r in res[m]] for m in METHODS}
    mean = {m: float(np.mean(v)) for m, v in rows.items()}
    std = {m: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for m, v in rows.items()}
    speed = {m: float(np.mean([r["s_per_step"] for r in res[m]])) for m in METHODS}
    params = {m: res[m][0]["params"] for m in METHODS}

    def gap(a: str, b: str) -> str:
        d = mean[a] - mean[b]
        if len(seeds) < 2:
            return f"{a} - {b} = {d:+.2f} points (one seed: no spread to compare with)"
        shown = "within 1 std: not shown" if abs(d) < max(std[a], std[b]) else "larger than 1 std"
        return f"{a} - {b} = {d:+.2f} points ({shown})"

    notes = ("Last-epoch test top-1 of a micro Swin (patch 4, window 4, dims 32/64) whose stage 0 uses the "
             "named token mixer; stage 1 keeps window attention. ELSA: kernel 5, group width 4, lam 0, gamma 1.\n\n"
             + f"{gap('elsa', 'swin')}; {gap('elsa', 'lsa')}.\n\n"
             + "Parameters: " + ", ".join(f"{m} {params[m] / 1e3:.1f}k" for m in METHODS) + ". "
             + "Seconds per training step (same run, same machine): "
             + ", ".join(f"{m} {speed[m]:.3f}" for m in METHODS) + f". Wall time {wall:.0f} s.")
    curves = {f"test top-1 per epoch (seed {seeds[0]})": {m: [h["top1"] for h in res[m][0]["history"]]
                                                             for m in METHODS}}
    bench = "shifted digits 32x32 (sklearn, +-4 px, noise), micro Swin, stage-0 mixer"
    write_summary("elsa", bench, "test top-1", rows, seeds, wall,
                  {m: f"elsa/configs/{CONFIG.format(m)}" for m in METHODS} | {"quick": args.quick},
                  out_dir=out_dir, notes=notes, curves=curves,
                  extra={"params": params, "seconds_per_step": speed,
                         "steps": {m: res[m][0]["steps"] for m in METHODS}})
    print((out_dir / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
