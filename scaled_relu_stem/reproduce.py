"""``make reproduce PAPER=scaled_relu_stem``: patchify vs. conv stem without ReLU vs. scaled-ReLU stem.

Embedded default (no ``--data``): a micro ViT (D=32, 2 blocks, 4x4 tokens) on 16x16 micro digits at a
moderate AdamW learning rate with warmup, where every stem learns (issue 25, claim 3: peak accuracy);
every method x seed, each seed with its own data draw. Reported: top-1 at the last epoch on the seed's
test split, the training-loss curves, the largest gradient norm, and the patch-token cosine similarity
after the stem and after each block, raw and centred (tokens minus their per-image mean; claim 2).

``--suite stability`` (issue 25, claim 1; its own 600 s; ``results/scaled_relu_stem-stability/``): the grid
optimiser (AdamW, SAM around AdamW) x warmup x learning rate for ``patchify``, ``conv_stem_no_relu``,
``conv_stem_no_bn`` and ``scaled_relu_stem``, shorter runs of the same configs; per cell the divergence rate over seeds
(:mod:`scaled_relu_stem.stability`) and the final top-1, a heat map.

Every run is a single-thread process (two at a time, ``--jobs``) with deterministic kernels, so the same
seeds give the same numbers on a re-run.

With ``--data ROOT`` (ImageNet-1k folders): runs ``scripts/deit-s_in1k.sh`` (all three stems, DeiT-S,
DeiT recipe) with ``GPUS``; ``--suite stability`` runs ``scripts/stability_sweep_deit-s_in1k.sh``.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from shared.cli import launch_script, parse_seeds, refuse_embedded_overrides, reproduce_parser
from shared.jobs import run_jobs
from shared.results import RESULTS, write_summary

from .grids import METHODS, STABILITY_METHODS, STABILITY_RUN, tuning_trials

HERE = Path(__file__).resolve().parent
PAPER = "scaled_relu_stem"
# the stability grid: learning rates (up to where patchify diverges) x warmup epochs x optimiser (SAM around
# AdamW, sam.py); chosen on validation draws (tune.py grid stability_micro, seeds 100, 101)
STABILITY_LRS = [1e-3, 1.6e-2, 0.256]
STABILITY_WARMUPS = [0, 1]
STABILITY_OPTIMS = ["adamw", "sam"]
QUICK = ["data.n_train=128", "data.n_test=64", "data.probe_images=16", "data.eval_batch_size=64",
         "engine.epochs=1", "engine.batch_size=32"]
STEADY_WINDOW = 50  # steps at the end of training over which loss steadiness is measured


def run_one(method: str, config: str, seed: int, overrides: list[str], run_dir: str, threads: int = 1) -> dict:
    """Train one config with one seed in this process (``threads`` intra-op threads, deterministic
    kernels); a NaN/inf or blown-up loss is recorded as a divergence, not an error."""
    import torch

    from shared.config import load_config
    from shared.engine import NonFiniteLossError, Trainer

    from .model import stem_summary
    from .stability import LossBlowupError
    from .train import SRStemConfig, SRStemTask

    t0 = time.time()
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        cfg_path = HERE / "configs" / config
        cfg = load_config(cfg_path, SRStemConfig, [f"engine.seed={seed}"] + list(overrides))
        shutil.rmtree(run_dir, ignore_errors=True)  # always a fresh run: metrics.jsonl appends otherwise
        task = SRStemTask(cfg)
        trainer = Trainer(task, cfg, run_dir)
        diverged, reason = False, ""
        try:
            metrics = trainer.fit()
        except (NonFiniteLossError, LossBlowupError) as e:
            diverged, reason = True, str(e).split(";")[0]
            trainer.model.eval()
            metrics = task.evaluate(trainer.model, trainer)
    finally:
        torch.set_num_threads(prev_threads)
    losses = np.asarray(task.step_losses, dtype=float)
    tail = losses[-STEADY_WINDOW:]
    return {"method": method, "seed": seed, "top1": float(metrics["top1"]), "diverged": diverged,
            "reason": reason, "steps": int(losses.size), "losses": losses.round(5).tolist(),
            "loss_tail_std": float(tail.std()) if tail.size else float("nan"),
            "max_grad_norm": float(max(task.grad_norms, default=0.0)),
            "token_similarity": list(task.token_similarity),
            "token_similarity_centred": list(task.token_similarity_centred),
            "config": str(cfg_path.relative_to(HERE.parent)), "overrides": list(overrides),
            "lr": cfg.optim.lr, "warmup_epochs": cfg.sched.warmup_epochs, "epochs": cfg.engine.epochs,
            "n_train": cfg.data.n_train, "batch_size": cfg.engine.batch_size, "stem": stem_summary(trainer.model),
            "wall_s": round(time.time() - t0, 1)}


def _mean_curve(curves: list[list[float]], smooth: int = 10) -> list[float]:
    """Seed-mean of per-step curves (truncated to the shortest, e.g. after a divergence), then a
    moving average over ``smooth`` steps for the plot."""
    n = min(len(c) for c in curves)
    m = np.mean([c[:n] for c in curves], axis=0)
    if n >= smooth:
        m = np.convolve(m, np.ones(smooth) / smooth, mode="valid")
    return m.round(4).tolist()


def _pooled_std(stds: list[float]) -> float:
    return float(np.sqrt(np.mean(np.square(stds))))


def _trials_line(trials: dict) -> str:
    per_row = sorted(set(trials["per_row"].values()))
    return (f"{' / '.join(map(str, per_row))} settings per row on validation draws (seeds >= 100), the same for "
            "every row (`tune.py` grids " + ", ".join(f"{g} {n}" for g, n in trials["grids"].items()) + ").")


def main_rows(args, seeds: list[int], out: Path, runs_root: Path) -> int:
    extra = QUICK if args.quick else []
    jobs = [((m, s), (m, METHODS[m], s, extra, str(runs_root / f"{m}_seed{s}"))) for s in seeds for m in METHODS]
    t0 = time.time()
    res = run_jobs(run_one, jobs, workers=args.jobs)
    wall = time.time() - t0
    results = {m: [res[(m, s)] for s in seeds] for m in METHODS}
    for s in seeds:
        for m in METHODS:
            r = res[(m, s)]
            print(f"{m:18s} seed {s}: top-1 {r['top1']:.2f}%  max grad-norm {r['max_grad_norm']:.2f}  token sim "
                  f"raw stem/last {r['token_similarity'][0]:.3f}/{r['token_similarity'][-1]:.3f}  centred "
                  f"{r['token_similarity_centred'][0]:.3f}/{r['token_similarity_centred'][-1]:.3f}"
                  + ("  DIVERGED" if r["diverged"] else ""), flush=True)

    per_method = {}
    for m, rs in results.items():
        per_method[m] = {
            "config": rs[0]["config"], "diverged_runs": sum(r["diverged"] for r in rs),
            "loss_tail_std_mean": round(float(np.mean([r["loss_tail_std"] for r in rs])), 4),
            "final_loss_mean": round(float(np.mean([np.mean(r["losses"][-STEADY_WINDOW:]) for r in rs])), 4),
            "max_grad_norm_mean": round(float(np.mean([r["max_grad_norm"] for r in rs])), 3),
            "token_similarity_per_layer": np.mean([r["token_similarity"] for r in rs], axis=0).round(4).tolist(),
            "token_similarity_centred_per_layer":
                np.mean([r["token_similarity_centred"] for r in rs], axis=0).round(4).tolist(),
            "stem_params": rs[0]["stem"]["stem_params"], "model_params": rs[0]["stem"]["model_params"],
            "per_seed_losses_sha": [hash(tuple(r["losses"])) & 0xFFFFFFFF for r in rs],
            "token_similarity_per_seed": [[round(v, 4) for v in r["token_similarity"]] for r in rs],
            "token_similarity_centred_per_seed": [[round(v, 4) for v in r["token_similarity_centred"]] for r in rs],
        }
    trials = tuning_trials("main", METHODS)
    for m in per_method:
        per_method[m]["tuning_trials"] = trials["per_row"][m]
    top = {m: [r["top1"] for r in rs] for m, rs in results.items()}
    mean = {m: float(np.mean(v)) for m, v in top.items()}
    std = {m: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for m, v in top.items()}
    claim = {}
    for other in ("patchify", "conv_stem_no_relu"):
        margin = mean["scaled_relu_stem"] - mean[other]
        pooled = _pooled_std([std["scaled_relu_stem"], std[other]])
        claim[f"scaled_relu_stem_vs_{other}"] = {"margin": round(margin, 3), "pooled_std": round(pooled, 3),
                                                 "holds": bool(margin > pooled)}
    claim["scaled_relu_stem_at_least_50"] = bool(mean["scaled_relu_stem"] >= 50.0)
    # claim 2, read on the centred measure: the scaled-ReLU stem's tokens less similar (lower) than each
    # other row's, after the stem and after the last block, by more than the pooled seed std
    diversity = {}
    for where, idx in (("stem", 0), ("last_block", -1)):
        sr = [r["token_similarity_centred"][idx] for r in results["scaled_relu_stem"]]
        for other in ("patchify", "conv_stem_no_relu"):
            o = [r["token_similarity_centred"][idx] for r in results[other]]
            margin = float(np.mean(o) - np.mean(sr))
            pooled = _pooled_std([float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for v in (sr, o)])
            diversity[f"centred_{where}_below_{other}"] = {"margin": round(margin, 4), "pooled_std": round(pooled, 4),
                                                           "holds": bool(margin > pooled)}
    curves = {
        "training loss (seed mean, 10-step avg)": {m: _mean_curve([r["losses"] for r in rs])
                                                   for m, rs in results.items()},
        "raw patch-token cosine (x=1: stem, 2..: blocks)": {
            m: per_method[m]["token_similarity_per_layer"] for m in results},
        "centred patch-token cosine (x=1: stem, 2..: blocks)": {
            m: per_method[m]["token_similarity_centred_per_layer"] for m in results},
    }
    r0 = results["scaled_relu_stem"][0]
    lines = [f"Embedded CPU check, not the paper's ImageNet numbers. Micro ViT D=32, 2 blocks, 4x4 tokens on 16x16 "
             f"micro digits; AdamW lr "
             f"{r0['lr']}, {r0['warmup_epochs']} warmup epoch(s), cosine, {r0['epochs']} epochs of {r0['n_train']} "
             f"images (batch {r0['batch_size']}, {r0['steps']} steps); each seed its own data draw; top-1 at the "
             "last epoch. Configs: " + ", ".join(f"`{v}`" for v in METHODS.values()) + ". Tuning: "
             + _trials_line(trials), "",
             "| method | diverged runs | final loss | max grad-norm | token cos-sim raw stem / last block | "
             "centred stem / last block | stem params |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for m, s in per_method.items():
        ts, tc = s["token_similarity_per_layer"], s["token_similarity_centred_per_layer"]
        lines.append(f"| {m} | {s['diverged_runs']}/{len(seeds)} | {s['final_loss_mean']:.3f} | "
                     f"{s['max_grad_norm_mean']:.2f} | {ts[0]:.3f} / {ts[-1]:.3f} | {tc[0]:.3f} / {tc[-1]:.3f} | "
                     f"{s['stem_params']} |")
    lines += ["", "Patch-token cosine similarity per layer (seed mean; stem, then each block):", "",
              "| method | raw | centred |", "| --- | --- | --- |"]
    lines += [f"| {m} | {', '.join(f'{v:.3f}' for v in p['token_similarity_per_layer'])} | "
              f"{', '.join(f'{v:.3f}' for v in p['token_similarity_centred_per_layer'])} |"
              for m, p in per_method.items()]
    lines += ["", "Claim 3 (issue 25): " + "; ".join(
        f"{k}: margin {v['margin']:.2f} vs pooled std {v['pooled_std']:.2f} -> {'holds' if v['holds'] else 'fails'}"
        for k, v in claim.items() if isinstance(v, dict))
        + f"; scaled_relu_stem >= 50 %: {'yes' if claim['scaled_relu_stem_at_least_50'] else 'no'}.",
        "", "Claim 2 (centred patch-token cosine of scaled_relu_stem lower, margin = other - scaled_relu_stem): "
        + "; ".join(f"{k}: margin {v['margin']:.4f} vs pooled std {v['pooled_std']:.4f} -> "
                    f"{'holds' if v['holds'] else 'fails'}" for k, v in diversity.items()) + "."]
    claim["token_diversity"] = diversity
    summary = write_summary(
        PAPER, "micro digits 16x16, micro ViT, moderate lr with warmup", "top-1", top, seeds, wall,
        config={m: v["config"] for m, v in per_method.items()}, out_dir=out,
        extra={"per_method": per_method, "claim": claim, "tuning_trials": trials, "quick": bool(args.quick)},
        curves=curves,
        notes="\n".join(lines))
    print("\n".join(lines))
    for r in summary["rows"]:
        print(f"{r['method']:18s} top-1 {r['mean']:.2f} +- {r['std']:.2f}  ({', '.join(map(str, r['per_seed']))})")
    print(f"wall time {wall:.0f} s; summary in {out}")
    return 0


def _heatmap(cells: list[dict], methods: list[str], lrs: list[float], rows: list[tuple[str, int]],
             path: Path) -> None:
    """One panel per stem: rows (optimiser, warmup), columns lr; colour = seed-mean top-1, text = top-1 and
    diverged runs."""
    from shared.results import _mpl

    plt = _mpl()
    fig, axes = plt.subplots(1, len(methods), figsize=(3.4 * len(methods), 0.6 * len(rows) + 1.6), squeeze=False)
    for ax, m in zip(axes[0], methods):
        grid = np.full((len(rows), len(lrs)), np.nan)
        for c in cells:
            if c["method"] == m:
                i, j = rows.index((c["optim"], c["warmup_epochs"])), lrs.index(c["lr"])
                grid[i, j] = c["top1_mean"]
                ax.text(j, i, f"{c['top1_mean']:.0f}%\n{c['diverged']}/{c['runs']} div", ha="center",
                        va="center", fontsize=7, color="w" if c["top1_mean"] < 60 else "k")
        ax.imshow(grid, vmin=0, vmax=100, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(lrs)), [f"{v:g}" for v in lrs], fontsize=7)
        ax.set_yticks(range(len(rows)), [f"{o}, wu {w}" for o, w in rows], fontsize=7)
        ax.set_xlabel("lr", fontsize=8)
        ax.set_title(m, fontsize=9)
    fig.suptitle("final top-1 (seed mean) and diverged runs per cell (wu: warmup epochs)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def stability_suite(args, seeds: list[int], out: Path, runs_root: Path) -> int:
    extra = QUICK + STABILITY_RUN[1:] if args.quick else STABILITY_RUN
    lrs = STABILITY_LRS[:1] + STABILITY_LRS[-1:] if args.quick else STABILITY_LRS
    warmups = STABILITY_WARMUPS[:1] if args.quick else STABILITY_WARMUPS
    cells = [(o, w, lr) for o in STABILITY_OPTIMS for w in warmups for lr in lrs]
    jobs = []
    for s in seeds:  # SAM and high lr first: the slowest runs and those most likely to stop early
        for o, w, lr in sorted(cells, key=lambda c: (c[0] != "sam", -c[2], c[1])):
            for m, cfg in STABILITY_METHODS.items():
                ov = list(extra) + [f"optim.name={o}", f"optim.lr={lr}", f"sched.warmup_epochs={w}"]
                jobs.append(((m, o, w, lr, s), (m, cfg, s, ov, str(runs_root / f"{m}_{o}_lr{lr:g}_wu{w}_seed{s}"))))
    t0 = time.time()
    res = run_jobs(run_one, jobs, workers=args.jobs)
    wall = time.time() - t0
    cell_rows = []
    for m in STABILITY_METHODS:
        for o, w, lr in cells:
            rs = [res[(m, o, w, lr, s)] for s in seeds]
            cell_rows.append({"method": m, "optim": o, "lr": lr, "warmup_epochs": w, "runs": len(rs),
                              "diverged": sum(r["diverged"] for r in rs),
                              "top1_mean": round(float(np.mean([r["top1"] for r in rs])), 3),
                              "top1_per_seed": [round(r["top1"], 3) for r in rs],
                              "max_loss": round(max(max(r["losses"], default=0.0) for r in rs), 3),
                              "reasons": [r["reason"] for r in rs if r["diverged"]],
                              "steps": [r["steps"] for r in rs]})
            c = cell_rows[-1]
            print(f"{m:18s} {o:5s} lr {lr:<6g} warmup {w}: top-1 {c['top1_mean']:6.2f}  diverged "
                  f"{c['diverged']}/{len(rs)}", flush=True)
    per_method = {}
    for m in STABILITY_METHODS:
        cs = [c for c in cell_rows if c["method"] == m]
        per_method[m] = {"cells_with_divergence": sum(c["diverged"] > 0 for c in cs),
                         "diverged_runs": sum(c["diverged"] for c in cs), "cells": len(cs),
                         "grid_mean_top1": round(float(np.mean([c["top1_mean"] for c in cs])), 3)}
    trials = tuning_trials("stability", STABILITY_METHODS)
    for m in per_method:
        per_method[m]["tuning_trials"] = trials["per_row"][m]
    # a row's per-seed value: that seed's top-1 averaged over the grid
    rows = {m: [float(np.mean([res[(m, *c, s)]["top1"] for c in cells])) for s in seeds]
            for m in STABILITY_METHODS}
    std = {m: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for m, v in rows.items()}
    sr = per_method["scaled_relu_stem"]
    claim = {f"fewer_divergent_cells_than_{o}":
             bool(sr["cells_with_divergence"] < per_method[o]["cells_with_divergence"])
             for o in ("patchify", "conv_stem_no_relu")}
    for o in ("patchify", "conv_stem_no_relu", "conv_stem_no_bn"):
        margin = sr["grid_mean_top1"] - per_method[o]["grid_mean_top1"]
        pooled = _pooled_std([std["scaled_relu_stem"], std[o]])
        claim[f"higher_grid_mean_top1_than_{o}"] = bool(margin > pooled)
        claim[f"grid_mean_margin_vs_{o}"] = {"margin": round(margin, 3), "pooled_std": round(pooled, 3)}
    lines = [f"Stability grid: optimiser {STABILITY_OPTIMS} (SAM: rho 0.05 around AdamW) x warmup {warmups} epochs "
             f"x lr {lrs}; each run: {', '.join(extra)} (rest as the embedded micro configs); diverged = NaN/inf "
             "loss or the 10-step mean loss > 2 ln 10 (`scaled_relu_stem/stability.py`); top-1 of a stopped run is "
             "that of its weights when it stopped. Tuning of the grid: " + _trials_line(trials), "",
             "| method | cells with a divergence | diverged runs | grid-mean top-1 (mean ± std over seeds) |",
             "| --- | --- | --- | --- |"]
    for m, p in per_method.items():
        lines.append(f"| {m} | {p['cells_with_divergence']}/{p['cells']} | {p['diverged_runs']}/"
                     f"{p['cells'] * len(seeds)} | {p['grid_mean_top1']:.2f} ± {std[m]:.2f} |")
    lines += ["", "| method | optimiser | warmup | lr | top-1 (seed mean) | per seed | diverged | largest loss |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {c['method']} | {c['optim']} | {c['warmup_epochs']} | {c['lr']:g} | {c['top1_mean']:.2f} | "
              f"{', '.join(f'{v:.1f}' for v in c['top1_per_seed'])} | {c['diverged']}/{c['runs']} | "
              f"{c['max_loss']:.2f} |" for c in cell_rows]
    lines += ["", "Claims: " + "; ".join(
        f"{k}: {'holds' if v else 'fails'}" if isinstance(v, bool) else
        f"{k}: {v['margin']:.2f} vs pooled std {v['pooled_std']:.2f}" for k, v in claim.items()) + ".",
        "", "Heat map: `heatmap.png`."]
    write_summary(f"{PAPER}-stability",
                  "stability grid optimiser x warmup x lr, micro digits, micro ViT",
                  "grid-mean top-1", rows, seeds, wall,
                  config={m: f"scaled_relu_stem/configs/{c}" for m, c in STABILITY_METHODS.items()}, out_dir=out,
                  extra={"per_method": per_method, "cells": cell_rows, "claim": claim, "tuning_trials": trials,
                         "quick": bool(args.quick),
                         "grid": {"optimizer": STABILITY_OPTIMS, "warmup_epochs": warmups, "lr": lrs}},
                  notes="\n".join(lines))
    _heatmap(cell_rows, list(STABILITY_METHODS), lrs, [(o, w) for o in STABILITY_OPTIMS for w in warmups],
             out / "heatmap.png")
    print("\n".join(lines))
    print(f"wall time {wall:.0f} s; summary in {out}")
    return 0


SUITES = {"main": main_rows, "stability": stability_suite}


def main(argv: list[str] | None = None) -> int:
    p = reproduce_parser(PAPER, __doc__.split("\n")[0], jobs=True)
    p.add_argument("--suite", default="main", choices=sorted(SUITES),
                   help="main: the three rows (claims 2 and 3); stability: the optimiser x warmup x lr grid "
                        "(claim 1)")
    args = p.parse_args(argv)
    if args.data:
        script = "stability_sweep_deit-s_in1k.sh" if args.suite == "stability" else "deit-s_in1k.sh"
        return launch_script(HERE / "scripts" / script, args.data, args.gpus, overrides=args.overrides)
    refuse_embedded_overrides("scaled_relu_stem", args)
    seeds = parse_seeds(args.seeds)
    name = PAPER if args.suite == "main" else f"{PAPER}-{args.suite}"
    out = Path(args.out) if args.out else RESULTS / name
    runs_root = out / "runs" if args.quick else Path("runs") / "reproduce" / name
    return SUITES[args.suite](args, seeds, out, runs_root)


if __name__ == "__main__":
    raise SystemExit(main())
