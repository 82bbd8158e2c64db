"""``make reproduce PAPER=scaled_relu_stem``: patchify vs. conv stem without ReLU vs. scaled-ReLU stem.

Embedded default (no ``--data``): a tiny ViT (D=64, 4 blocks, 8x8 tokens) on 32x32 cluttered digits,
AdamW at a learning rate high enough that the patchify stem struggles, no warmup; every method x seed;
top-1 on the fixed test split, the training-loss curves, their steadiness (std of the loss over the
last 50 steps), the largest gradient norm, and the patch-token cosine similarity after the stem and
after each block (paper claim: lower, i.e. more diverse, with the scaled-ReLU stem).

With ``--data ROOT`` (ImageNet-1k folders): runs ``scripts/deit-s_in1k.sh`` (all three stems, DeiT-S,
DeiT recipe) with ``GPUS``.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from shared.cli import launch_script, parse_seeds, reproduce_parser
from shared.config import load_config
from shared.engine import NonFiniteLossError, Trainer
from shared.results import write_summary

from .model import stem_summary
from .train import SRStemConfig, SRStemTask

HERE = Path(__file__).resolve().parent
PAPER = "scaled_relu_stem"
# method name (exactly as the issue names the rows) -> config
METHODS = {
    "patchify": "patchify_vit-tiny_1xb64_cluttered-digits.yaml",
    "conv_stem_no_relu": "conv_stem_no_relu_vit-tiny_1xb64_cluttered-digits.yaml",
    "scaled_relu_stem": "scaled_relu_stem_vit-tiny_1xb64_cluttered-digits.yaml",
}
QUICK = ["data.n_train=128", "data.n_test=64", "data.probe_images=16", "data.eval_batch_size=64",
         "engine.epochs=1", "engine.batch_size=32"]
STEADY_WINDOW = 50  # steps at the end of training over which loss steadiness is measured


def run_one(method: str, seed: int, quick: bool, runs_root: Path, overrides: list[str] = ()) -> dict:
    """Train one method with one seed; a NaN/inf loss is recorded as a divergence, not an error."""
    cfg_path = HERE / "configs" / METHODS[method]
    cfg = load_config(cfg_path, SRStemConfig,
                      [f"engine.seed={seed}"] + (QUICK if quick else []) + list(overrides))
    run_dir = runs_root / f"{method}_seed{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)  # always a fresh run: metrics.jsonl appends otherwise
    task = SRStemTask(cfg)
    trainer = Trainer(task, cfg, run_dir)
    diverged = False
    try:
        metrics = trainer.fit()
    except NonFiniteLossError as e:
        print(f"  {method} seed {seed}: diverged ({e})")
        diverged = True
        trainer.model.eval()
        metrics = task.evaluate(trainer.model, trainer)
    losses = np.asarray(task.step_losses, dtype=float)
    tail = losses[-STEADY_WINDOW:]
    return {"top1": float(metrics["top1"]), "diverged": diverged, "losses": losses.tolist(),
            "loss_tail_std": float(tail.std()) if tail.size else float("nan"),
            "max_grad_norm": float(max(task.grad_norms, default=0.0)),
            "token_similarity": list(task.token_similarity), "config": str(cfg_path.relative_to(HERE.parent)),
            "stem": stem_summary(trainer.model)}


def _mean_curve(curves: list[list[float]], smooth: int = 10) -> list[float]:
    """Seed-mean of per-step curves (truncated to the shortest, e.g. after a divergence), then a
    moving average over ``smooth`` steps for the plot."""
    n = min(len(c) for c in curves)
    m = np.mean([c[:n] for c in curves], axis=0)
    if n >= smooth:
        m = np.convolve(m, np.ones(smooth) / smooth, mode="valid")
    return m.round(4).tolist()


def main(argv: list[str] | None = None) -> int:
    args = reproduce_parser(PAPER, __doc__.split("\n")[0]).parse_args(argv)
    if args.data:
        return launch_script(HERE / "scripts" / "deit-s_in1k.sh", args.data, args.gpus)
    seeds = parse_seeds(args.seeds)
    out = Path(args.out) if args.out else None
    runs_root = (out or Path("runs")) / "scaled_relu_stem_runs" if args.quick else Path("runs") / PAPER
    t0 = time.time()
    results: dict[str, list[dict]] = {m: [] for m in METHODS}
    for seed in seeds:
        for method in METHODS:
            r = run_one(method, seed, args.quick, runs_root)
            results[method].append(r)
            print(f"{method:18s} seed {seed}: top-1 {r['top1']:.2f}%  loss-tail std {r['loss_tail_std']:.3f}"
                  f"  max grad-norm {r['max_grad_norm']:.2f}  token sim stem/last "
                  f"{r['token_similarity'][0]:.3f}/{r['token_similarity'][-1]:.3f}"
                  + ("  DIVERGED" if r["diverged"] else ""), flush=True)
    wall = time.time() - t0

    per_method = {}
    for m, rs in results.items():
        per_method[m] = {
            "config": rs[0]["config"], "diverged_runs": sum(r["diverged"] for r in rs),
            "loss_tail_std_mean": round(float(np.mean([r["loss_tail_std"] for r in rs])), 4),
            "final_loss_mean": round(float(np.mean([np.mean(r["losses"][-STEADY_WINDOW:]) for r in rs])), 4),
            "max_grad_norm_mean": round(float(np.mean([r["max_grad_norm"] for r in rs])), 3),
            "token_similarity_per_layer": np.mean([r["token_similarity"] for r in rs], axis=0).round(4).tolist(),
            "stem_params": rs[0]["stem"]["stem_params"], "model_params": rs[0]["stem"]["model_params"],
        }
    curves = {
        "training loss (seed mean, 10-step avg)": {m: _mean_curve([r["losses"] for r in rs])
                                                   for m, rs in results.items()},
        "patch-token cosine sim. (x=1: stem, 2..: blocks)": {
            m: per_method[m]["token_similarity_per_layer"] for m in results},
    }
    cfg0 = load_config(HERE / "configs" / METHODS["scaled_relu_stem"], SRStemConfig, QUICK if args.quick else [])
    lines = ["Embedded CPU check (spec section 9), not the paper's ImageNet numbers. ViT: D="
             f"{cfg0.model.embed_dim}, {cfg0.model.depth} blocks, 8x8 tokens; AdamW lr {cfg0.optim.lr}, "
             f"no warmup, {cfg0.engine.epochs} epochs of {cfg0.data.n_train} images, batch "
             f"{cfg0.engine.batch_size}. Configs: " + ", ".join(f"`{v}`" for v in METHODS.values()) + ".", "",
             "| method | diverged runs | loss std, last 50 steps | final loss | max grad-norm | "
             "token cos-sim stem / last block | stem params |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for m, s in per_method.items():
        ts = s["token_similarity_per_layer"]
        lines.append(f"| {m} | {s['diverged_runs']}/{len(seeds)} | {s['loss_tail_std_mean']:.3f} | "
                     f"{s['final_loss_mean']:.3f} | {s['max_grad_norm_mean']:.2f} | {ts[0]:.3f} / {ts[-1]:.3f} | "
                     f"{s['stem_params']} |")
    summary = write_summary(
        PAPER, "cluttered digits 32x32, tiny ViT, high lr, no warmup", "top-1",
        {m: [r["top1"] for r in rs] for m, rs in results.items()}, seeds, wall,
        config={m: v["config"] for m, v in per_method.items()}, out_dir=out,
        extra={"per_method": per_method, "quick": bool(args.quick)}, curves=curves, notes="\n".join(lines))
    print("\n".join(lines))
    for r in summary["rows"]:
        print(f"{r['method']:18s} top-1 {r['mean']:.2f} +- {r['std']:.2f}  ({', '.join(map(str, r['per_seed']))})")
    print(f"wall time {wall:.0f} s; summary in {out or 'results/' + PAPER}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
