"""``make reproduce PAPER=knn_attention``: dense vs k-NN attention in a tiny ViT among irrelevant tokens.

Default suite: rows ``dense`` and ``knn`` (k = floor(N/2) = 32 of N = 65 keys, the DeiT ratio 100/197),
3 seeds, the same data draw, steps and parameters per seed; only the attention differs. The data are
``knn_attention.data.distractor_digits`` (64 patch tokens, about 3/4 of them clutter, distractors,
occlusion or noise). Reported: test top-1 at the last step (rows), top-1 every 100 steps and its area
(mean over evaluations: the convergence claim), seconds per training step of both arms (same run),
CLS attention share on digit patches, attention entropy and attended distance.

Suites (``--suite NAME``, each its own budget and results folder ``results/knn_attention[-NAME]``):

* ``default`` -- ``dense``, ``knn``;
* ``k_sweep`` -- ``knn_k0.25``, ``knn_k0.5``, ``knn_k0.75`` (k = int(r * N) of N = 65: 16, 32, 48).

Every (row, seed) run is one single-thread process (``--jobs`` at a time): one thread per run makes the
numbers independent of machine load and of how many runs share the cores (two threads let MKL/OpenMP
split reductions differently from run to run; see the README, "Determinism").

With ``--data ROOT`` it launches the ImageNet DeiT-Tiny dense + k-NN runs instead
(``scripts/in1k_deit.sh``; ``--model small`` for DeiT-Small).
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import torch

from shared.cli import launch_script, parse_seeds, refuse_embedded_overrides, reproduce_dirs, reproduce_parser
from shared.config import load_config
from shared.engine import Trainer
from shared.jobs import run_jobs
from shared.results import claim, tuning_line, write_summary

from .train import KNNConfig, KNNTask

HERE = Path(__file__).resolve().parent
_C = HERE / "configs"
CONFIGS = {
    "dense": _C / "dense_vit-p4d3w48_convstem_1xb32-12e_distractor-digits.yaml",
    "knn": _C / "knn_vit-p4d3w48_convstem_1xb32-12e_distractor-digits.yaml",
    "knn_k0.25": _C / "knn-k0.25_vit-p4d3w48_convstem_1xb32-12e_distractor-digits.yaml",
    "knn_k0.5": _C / "knn-k0.5_vit-p4d3w48_convstem_1xb32-12e_distractor-digits.yaml",
    "knn_k0.75": _C / "knn-k0.75_vit-p4d3w48_convstem_1xb32-12e_distractor-digits.yaml",
}
SUITES = {"default": ("dense", "knn"), "k_sweep": ("knn_k0.25", "knn_k0.5", "knn_k0.75")}
# How each row's settings were chosen (validation draws only, never a reported seed; README, "Settings tried
# per row" and "Probe F"): distinct settings tried, the committed one included, and the training runs spent
# on the choice. Written into summary.json as ``tuning_trials``; change it when a row is re-tuned.
_PROBES = ("probes on validation draw 100 with the frozen lr/optimiser: (A) linear stem, 800 steps of 64; {b}"
           "(D) 64 px canvas, patch 8; (E) 3,000 steps; the committed conv-stem setting (no validation run of its "
           "own); (F) class-token readout on draws 100/101 (not adopted)")
_SWEEP = "the default suite's frozen base config; k fixed by the issue (k = int(r * 65)), nothing searched"
TUNING_TRIALS = {
    "dense": {"settings": 7, "validation_runs": 7, "how": _PROBES.format(
        b="(B) 1,000 steps of 32 at noise 0.1 and 0.15, dense only (the dense >= 50 % precondition); ")},
    "knn": {"settings": 5, "validation_runs": 5, "how": _PROBES.format(b="")},
    **{m: {"settings": 1, "validation_runs": 0, "how": _SWEEP} for m in ("knn_k0.25", "knn_k0.5", "knn_k0.75")},
}
QUICK = ["engine.epochs=2", "data.epoch_samples=64", "engine.batch_size=32", "data.n_train=128",
         "data.n_test=64", "model.depth=1", "model.embed_dim=24"]
STATS = ("cls_digit_share", "cls_digit_share_last", "digit_patch_frac", "attn_entropy", "key_distance")
BENCH = ("distractor digits 32x32 (20 px digit, 6 distractors, occluder, noise), tiny conv-stem ViT "
         "(64 patch tokens + CLS), 1200 steps")


def run_one(method: str, seed: int, run_dir: Path, quick: bool) -> dict:
    """One (row, seed) run, single-threaded (deterministic); returns its final numbers and curve."""
    torch.set_num_threads(1)
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run every time (never a stale last.pt or metrics)
    over = ["logger.progress=false", f"engine.seed={seed}"] + (QUICK if quick else [])
    cfg = load_config(CONFIGS[method], KNNConfig, over)
    t0 = time.time()
    Trainer(KNNTask(cfg), cfg, run_dir).fit()
    hist = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)["history"]
    steps_per_epoch = cfg.data.epoch_samples // cfg.engine.batch_size
    last = hist[-1]
    curve = [h["top1"] for h in hist]
    out = {
        "top1": last["top1"],
        "auc": float(np.mean(curve)),
        "curve": curve,
        "steps": [steps_per_epoch * h["epoch"] for h in hist],  # history epochs count from 1
        "loss_auc": float(np.mean([h["train/loss"] for h in hist])),
        "s_per_step": float(sum(h["epoch_seconds"] for h in hist) / (steps_per_epoch * len(hist))),
        **{k: last[k] for k in STATS if k in last},
    }
    print(f"  {method:9s} seed {seed}: top-1 {out['top1']:.2f}, area {out['auc']:.2f}, "
          f"{out['s_per_step']:.3f} s/step ({time.time() - t0:.0f} s)", flush=True)
    return out


def _ms(v) -> str:
    return f"{np.mean(v):.3f} ± {np.std(v, ddof=1) if len(v) > 1 else 0.0:.3f}"


def main(argv: list[str] | None = None) -> int:
    p = reproduce_parser("knn_attention", __doc__.split("\n")[0], jobs=True)
    p.add_argument("--suite", default="default", choices=list(SUITES),
                   help="which study: default (dense, knn) or k_sweep (knn_k0.25/0.5/0.75); own results folder")
    p.add_argument("--methods", default="", help=f"rows to run instead of the suite's (from {', '.join(CONFIGS)})")
    p.add_argument("--model", default="tiny", choices=["tiny", "small", "base"], help="with --data: DeiT size")
    args = p.parse_args(argv)
    if args.data:
        return launch_script(HERE / "scripts" / "in1k_deit.sh", args.data, args.gpus,
                             extra_env={"DEIT_SIZE": args.model}, overrides=args.overrides)
    refuse_embedded_overrides("knn_attention", args)
    methods = [m for m in args.methods.split(",") if m] or list(SUITES[args.suite])
    bad = [m for m in methods if m not in CONFIGS]
    if bad:
        raise SystemExit(f"--methods: unknown {', '.join(bad)} (choose from {', '.join(CONFIGS)})")
    seeds = parse_seeds(args.seeds)
    name = "knn_attention" if args.suite == "default" else f"knn_attention-{args.suite}"
    out_dir, run_root = reproduce_dirs(name, args)
    start = time.time()
    print(f"{name} embedded reproduction: {methods}, seeds {seeds}, {args.jobs} jobs -> {out_dir}", flush=True)
    jobs = [((m, s), (m, s, run_root / f"{m}_s{s}", args.quick)) for s in seeds for m in methods]
    done = run_jobs(run_one, jobs, workers=args.jobs)
    res = {m: [done[(m, s)] for s in seeds] for m in methods}
    wall = time.time() - start
    rows = {m: [r["top1"] for r in res[m]] for m in methods}
    steps = res[methods[0]][0]["steps"]
    title = "test top-1 (%) vs training step (seed mean)"
    curves = {title: {m: list(np.mean([r["curve"] for r in res[m]], axis=0)) for m in methods}}
    per_method = {m: {k: [r[k] for r in res[m]] for k in ("auc", "loss_auc", "s_per_step", *STATS) if k in res[m][0]}
                  for m in methods}
    lines = ["Top-1 (%) at steps " + ", ".join(map(str, steps)) + " (seed mean):", "",
             "| method | " + " | ".join(map(str, steps)) + " |", "| --- |" + " --- |" * len(steps)]
    for m, c in curves[title].items():
        lines.append(f"| {m} | " + " | ".join(f"{v:.1f}" for v in c) + " |")
    lines += ["", "Area under the top-1 curve (mean top-1 over the evaluations), attention statistics on 256 test "
              "images (final model, mean over layers) and seconds per training step (both arms in the same "
              "run, one thread each), mean ± std over seeds. cls_digit_share: CLS attention mass on patches "
              "holding digit pixels / mass on all patches; digit_patch_frac: what a uniform map would give.", "",
              "| method | top-1 area | cls_digit_share | last layer | digit_patch_frac | entropy (nats) | "
              "key distance (patches) | train loss (mean) | s/step |", "| --- |" + " --- |" * 8]
    for m in methods:
        d = per_method[m]
        lines.append(f"| {m} | " + " | ".join(_ms(d[k]) if k in d else "-" for k in (
            "auc", "cls_digit_share", "cls_digit_share_last", "digit_patch_frac", "attn_entropy", "key_distance",
            "loss_auc", "s_per_step")) + " |")
    claims = {}
    if "dense" in rows and "knn" in rows:
        claims = {"final_top1": claim(rows["knn"], rows["dense"], 2.0),
                  "curve_area": claim(per_method["knn"]["auc"], per_method["dense"]["auc"])}
        (d1, s1, h1), (d2, s2, h2) = ((c["diff"], c["pooled_std"], c["holds"]) for c in claims.values())
        lines += ["", f"Claim knn >= dense + 2 points (final top-1): {d1:+.2f} points, pooled seed std {s1:.2f}: "
                  f"{'holds' if h1 else 'does not hold'}.",
                  f"Claim larger area under the top-1 curve: {d2:+.2f} points, pooled seed std {s2:.2f}: "
                  f"{'holds' if h2 else 'does not hold'}.",
                  "Paired per-seed differences knn - dense (final top-1): "
                  + ", ".join(f"{a - b:+.1f}" for a, b in zip(rows["knn"], rows["dense"])) + "."]
    lines += ["", tuning_line({m: TUNING_TRIALS[m] for m in methods})]
    write_summary(
        name, BENCH, "test top-1 accuracy at the last step", rows, seeds, wall,
        {m: str(CONFIGS[m].relative_to(HERE.parent)) for m in methods} | {"quick": args.quick, "suite": args.suite},
        out_dir=out_dir, notes="\n".join(lines), curves=curves, curves_x={title: steps},
        curves_xlabel="training step",
        extra={"steps": steps, "curves": {m: [r["curve"] for r in res[m]] for m in methods},
               "per_method": per_method, "claims": claims, "suite": args.suite,
               "tuning_trials": {m: TUNING_TRIALS[m] for m in methods}})
    print((out_dir / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
