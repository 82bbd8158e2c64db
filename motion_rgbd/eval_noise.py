"""``python -m motion_rgbd.eval_noise``: how much of a suite's per-row seed std is evaluation noise?

Trains each row of a suite (default: ``decoupling``) with the frozen embedded recipe on **validation draws
only** (seeds >= 100: train data 9000 + s, its own test draw 9500 + s; the reported seeds are refused), then
scores the same weights on ``--draws`` independent test draws of the suite's generator (data seeds 9800 + k,
``n_test`` clips per class each, the fixed test geometry), i.e. exactly what one reported seed's test set is.

Per row, with A[s, k] the accuracy of training seed s on test draw k:

* evaluation variance = mean over s of var_k A[s, k] (same weights, another test draw);
* training variance = var_s (mean_k A[s, k]) - evaluation variance / K (another seed on a fixed, large test
  set; the K-draw mean still carries 1/K of the evaluation noise, which is subtracted);
* total = their sum: what the reported protocol (each seed its own single test draw) sees per row.

The rule in the README (written before the measurement) compares evaluation with total variance.
Results: ``<out>/summary.json`` and ``summary.md``; weights and draws under ``--run-root``.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from shared.cli import parse_seeds
from shared.config import load_config
from shared.jobs import run_jobs

from .model import MotionNet
from .reproduce import CONFIG, QUICK, SUITES, VARIANTS, EmbeddedConfig, _call, _load, make_data, run_arm
from .synthetic import CLASSES, make_synthetic
from .train import evaluate_unimodal, net_kwargs

DRAW_SEED = 9800  # test draws 9800 + k: never a reported (1000 + s, 2000 + s) or a validation seed's own draw
MIN_SEED = 100  # validation draws only


def noise_components(acc: np.ndarray) -> dict:
    """Variance components of an (S seeds, K test draws) accuracy matrix (sample variances, ddof 1)."""
    acc = np.asarray(acc, dtype=float)
    s, k = acc.shape
    eval_var = float(np.mean(np.var(acc, axis=1, ddof=1)))
    train_var = float(np.var(acc.mean(1), ddof=1) - eval_var / k)
    total = max(train_var, 0.0) + eval_var
    return {"eval_var": eval_var, "train_var": train_var, "total_var": total,
            "eval_std": float(np.sqrt(eval_var)), "train_std": float(np.sqrt(max(train_var, 0.0))),
            "total_std": float(np.sqrt(total)), "eval_share": eval_var / total if total > 0 else float("nan"),
            "seeds": s, "draws": k}


def stratified_se(per_class_acc: np.ndarray, n_per_class: int) -> float:
    """Binomial SE (points) of a class-balanced accuracy with per-class accuracies ``per_class_acc`` (0..1)."""
    p = np.asarray(per_class_acc, dtype=float)
    return float(100 * np.sqrt(np.sum(p * (1 - p) / n_per_class)) / len(p))


def make_draw(cfg: EmbeddedConfig, suite: str, k: int, path: Path) -> int:
    study = getattr(cfg, suite)
    test = cfg.augment.test(make_synthetic(study.n_test, DRAW_SEED + k, study.data))
    torch.save({"rgb": test.rgb, "g_rgb": test.g_rgb, "depth": test.depth, "g_depth": test.g_depth, "y": test.y},
               path)
    return len(test.y)


def noise_arm(cfg: EmbeddedConfig, suite: str, row: str, seed: int, root: Path, draws: list[Path]) -> dict:
    """Train one row on seed ``seed``'s validation draw (the reported code path), then score its saved weights
    on its own test draw and on every extra draw; returns the accuracies (``own_reloaded``: the reloaded weights on
    the seed's own draw, equal to ``own`` when the weights round-trip)."""
    out = run_arm(cfg, suite, row, seed, root)
    study = getattr(cfg, suite)
    model = MotionNet(len(CLASSES), **net_kwargs(asdict(cfg.model) | VARIANTS[row], study.train.epochs))
    model.load_state_dict(torch.load(root / f"{row}_s{seed}.pt", weights_only=True))
    mod = "depth" if row == "depth" else "rgb"
    _, own = _load(root / f"data_s{seed}.pt")
    own_pred = torch.tensor(out["logits"]).argmax(-1)
    res = {"own": 100.0 * float((own_pred == own.y).float().mean()), "draws": [], "per_class": [],
           "train_seconds": out["seconds"]}
    t0 = time.time()
    with torch.no_grad():
        res["own_reloaded"] = 100.0 * float((evaluate_unimodal(model, own, mod).argmax(-1) == own.y).float().mean())
        for p in draws:
            d = torch.load(p, weights_only=True)
            pred = evaluate_unimodal(model, SimpleNamespace(**d), mod).argmax(-1)
            hit = (pred == d["y"]).float()
            res["draws"].append(100.0 * float(hit.mean()))
            res["per_class"].append([float(hit[d["y"] == c].mean()) for c in range(len(CLASSES))])
    res["eval_seconds"] = time.time() - t0
    print(f"  {row:13s} seed {seed}: own draw {res['own']:.1f}, draws mean {np.mean(res['draws']):.1f} "
          f"std {np.std(res['draws'], ddof=1):.2f}", flush=True)
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m motion_rgbd.eval_noise", description=__doc__.split("\n")[0])
    p.add_argument("--suite", default="decoupling", choices=list(SUITES))
    p.add_argument("--seeds", default="100,101,102,103,104,105,106,107", help="validation seeds (>= 100)")
    p.add_argument("--draws", type=int, default=10, help="independent test draws per trained model")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default="results/motion_rgbd-decoupling/eval_noise")
    p.add_argument("--run-root", default="runs/motion_rgbd-eval_noise")
    p.add_argument("--config", default=str(CONFIG))
    p.add_argument("--quick", action="store_true", help="smoke test (tiny data, one epoch)")
    p.add_argument("--set", nargs="*", default=[], help="config overrides key=value")
    args = p.parse_args(argv)
    seeds = parse_seeds(args.seeds)
    if min(seeds) < MIN_SEED:
        raise SystemExit(f"--seeds: validation draws only (>= {MIN_SEED}), got {seeds}")
    if args.draws < 2 or len(seeds) < 2:
        raise SystemExit("--draws and --seeds: at least 2 each (variances)")
    cfg = load_config(args.config, EmbeddedConfig, (QUICK if args.quick else []) + list(args.set))
    rows = tuple(r for r in SUITES[args.suite] if r in VARIANTS)
    root = Path(args.run_root)
    root.mkdir(parents=True, exist_ok=True)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    draw_paths = [root / f"draw_{k}.pt" for k in range(args.draws)]
    jobs = [(("draw", k), (make_draw, cfg, args.suite, k, draw_paths[k])) for k in range(args.draws)]
    jobs += [(("data", s), (make_data, cfg, args.suite, s, True, root / f"data_s{s}.pt")) for s in seeds]
    jobs += [((r, s), (noise_arm, cfg, args.suite, r, s, root, draw_paths)) for s in seeds for r in rows]
    deps = {(r, s): [("data", s)] + [("draw", k) for k in range(args.draws)] for s in seeds for r in rows}
    done = run_jobs(_call, jobs, deps=deps, workers=max(1, args.jobs))
    wall = time.time() - start
    study = getattr(cfg, args.suite)
    table = {}
    for r in rows:
        acc = np.array([done[(r, s)]["draws"] for s in seeds])
        own = [done[(r, s)]["own"] for s in seeds]
        pc = np.array([done[(r, s)]["per_class"] for s in seeds]).mean((0, 1))
        table[r] = noise_components(acc) | {
            "acc": acc.tolist(), "own_draw": own, "own_reloaded": [done[(r, s)]["own_reloaded"] for s in seeds],
            "own_draw_std": float(np.std(own, ddof=1)),
            "mean": float(acc.mean()), "per_class_mean": pc.tolist(),
            "stratified_se": stratified_se(pc, study.n_test), "binomial_se_p50": float(
                100 * np.sqrt(0.25 / (study.n_test * len(CLASSES))))}
    pooled = {"eval_var": float(np.mean([t["eval_var"] for t in table.values()])),
              "total_var": float(np.mean([t["total_var"] for t in table.values()]))}
    pooled["eval_share"] = pooled["eval_var"] / pooled["total_var"] if pooled["total_var"] > 0 else float("nan")
    diffs = {}
    for r in rows[1:]:
        d = np.array(table[rows[0]]["acc"]) - np.array(table[r]["acc"])
        diffs[f"{rows[0]}-{r}"] = noise_components(d) | {"mean": float(d.mean())}
    summary = {"suite": args.suite, "seeds": seeds, "draws": args.draws, "draw_seeds": [DRAW_SEED + k for k in
               range(args.draws)], "n_test_per_class": study.n_test, "n_train_per_class": study.n_train,
               "wall_seconds": wall, "quick": args.quick, "rows": table, "pooled": pooled, "paired_diffs": diffs,
               "seconds": {f"{r}_s{s}": [done[(r, s)]["train_seconds"], done[(r, s)]["eval_seconds"]]
                           for r in rows for s in seeds}}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    lines = [f"# motion_rgbd-{args.suite}: evaluation vs training noise (validation draws only)", "",
             f"Seeds {seeds} (train data 9000 + s), each model scored on {args.draws} test draws of "
             f"{study.n_test} clips per class (data seeds {DRAW_SEED}-{DRAW_SEED + args.draws - 1}); "
             f"{wall:.0f} s wall.", "",
             "| row | mean | eval std | train std | total std | eval share of variance | stratified SE | "
             "own-draw seed std |", "| --- |" + " --- |" * 7]
    for r, t in table.items():
        lines.append(f"| {r} | {t['mean']:.2f} | {t['eval_std']:.2f} | {t['train_std']:.2f} | {t['total_std']:.2f} "
                     f"| {t['eval_share']:.2f} | {t['stratified_se']:.2f} | {t['own_draw_std']:.2f} |")
    lines += ["", f"Pooled over rows: evaluation variance {pooled['eval_var']:.2f}, total {pooled['total_var']:.2f}, "
              f"share {pooled['eval_share']:.2f}.", "", "Paired differences (same test draw):", ""]
    lines += [f"- {k}: mean {d['mean']:+.2f}, eval std {d['eval_std']:.2f}, train std {d['train_std']:.2f}"
              for k, d in diffs.items()]
    (out_dir / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
