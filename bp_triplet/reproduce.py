"""``make reproduce PAPER=bp_triplet``: the embedded study, every method x seed, then the summary.

Without ``--data``: rendered-font digits -> scikit-learn handwritten digits (8x8, CPU), methods
``source_only``, ``dann``, ``plain_triplet`` (DANN + the same triplet likelihood with every weight 1)
and ``bp_triplet`` (DANN + the BP-Triplet loss), plus the ablations named in ``--methods``. Reports
final-iteration target top-1 (no model selection on target labels) and the proxy A-distance; logs the
pseudo-label coverage and precision at every refresh. With ``--data ROOT``: runs
``bp_triplet/scripts/<benchmark>.sh`` on the real benchmark.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from shared.cli import launch_script, parse_seeds, reproduce_parser
from shared.config import load_config
from shared.engine import Trainer
from shared.results import summarise, write_summary

from .evaluate import evaluate_model
from .train import BPTripletConfig, BPTripletTask

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "configs" / "bp-triplet_embeddednet_1xb32-25e_digits-embedded.yaml"

# Each method is the embedded config plus these overrides (the names first).
METHODS: dict[str, list[str]] = {
    "source_only": ["adv.enabled=false", "triplet.kind=none"],
    "dann": ["triplet.kind=none"],
    "plain_triplet": ["triplet.alpha_intra=1.0", "triplet.alpha_inter=1.0", "triplet.tau=null",
                      "triplet.confidence=false"],
    "bp_triplet": [],
    # ablations (spec 11 arms c, d, f, g, h); run them with --methods
    "dann_pseudo_ce": ["triplet.kind=none", "pseudo.target_ce_weight=1.0"],
    "batch_hard_triplet": ["triplet.kind=batch_hard"],
    "bp_no_domain_prior": ["triplet.alpha_intra=1.0", "triplet.alpha_inter=1.0"],
    "bp_no_hard_attention": ["triplet.tau=null"],
    "bp_no_adv": ["adv.enabled=false"],
}
DEFAULT_METHODS = ["source_only", "dann", "plain_triplet", "bp_triplet"]
QUICK = ["engine.epochs=2", "data.pairs_per_epoch=64", "data.n_source=300", "pseudo.warmup_steps=2",
         "pseudo.every_steps=2", "adv.max_iters=8", "engine.batch_size=32"]
BENCHMARKS = ("digits", "office31", "imageclef", "officehome", "visda")


def run_one(method: str, seed: int, run_root: Path, quick: bool, extra: list[str] = ()) -> dict:
    overrides = METHODS[method] + (QUICK if quick else []) + list(extra) + [f"engine.seed={seed}"]
    cfg = load_config(CONFIG, BPTripletConfig, overrides)
    task = BPTripletTask(cfg)
    trainer = Trainer(task, cfg, run_root / f"{method}_seed{seed}")
    trainer.fit()
    history = trainer.history
    res = evaluate_model(trainer.model, task.domains, trainer.device, seed, cfg.data.eval_batch_size)
    return {**res, "curve_top1": [float(r.get("target_top1", np.nan)) for r in history],
            "pseudo": task.pseudo.history}


def main(argv: list[str] | None = None) -> int:
    p = reproduce_parser("bp_triplet", __doc__.split("\n")[0])
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help=f"comma-separated, from: {', '.join(METHODS)}")
    p.add_argument("--benchmark", default="office31", choices=BENCHMARKS, help="with --data: which script")
    args = p.parse_args(argv)
    if args.data:
        return launch_script(HERE / "scripts" / f"{args.benchmark}.sh", args.data, args.gpus, overrides=args.overrides)
    seeds = parse_seeds(args.seeds)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown}; choose from {', '.join(METHODS)}")
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    run_root = Path("runs") / "bp_triplet" / ("embedded_quick" if args.quick else "embedded")
    t0 = time.time()
    results: dict[str, list[dict]] = {m: [] for m in methods}
    for seed in seeds:
        for m in methods:
            r = run_one(m, seed, run_root, args.quick, args.overrides)
            results[m].append(r)
            print(f"seed {seed} {m:22s} target top-1 {r['target_top1']:6.2f}  A-distance {r['a_distance']:.3f}"
                  f"  ({time.time() - t0:.0f} s)", flush=True)
    wall = time.time() - t0
    rows = {m: [r["target_top1"] for r in rs] for m, rs in results.items()}
    a_dist = {m: [r["a_distance"] for r in rs] for m, rs in results.items()}
    extra = {
        "a_distance": {m: {"mean": round(summarise(v)[0], 4), "std": round(summarise(v)[1], 4),
                           "per_seed": [round(x, 4) for x in v]} for m, v in a_dist.items()},
        "pseudo_labels": {m: [r["pseudo"] for r in rs] for m, rs in results.items() if rs[0]["pseudo"]},
        "protocol": "final-iteration target top-1 (%) on all 1,797 scikit-learn digits, no model selection; "
                    "A-distance 2(1-2 eps) of a logistic-regression domain classifier on bottleneck features",
    }
    curves = {"target top-1 per epoch (seed mean)": {
        m: list(np.nanmean([r["curve_top1"] for r in rs], axis=0)) for m, rs in results.items()}}
    if "bp_triplet" in results and results["bp_triplet"][0]["pseudo"]:
        hist = results["bp_triplet"][0]["pseudo"]
        curves["bp_triplet pseudo-labels per refresh (seed 0, %)"] = {
            "coverage": [h["pl_coverage"] for h in hist], "precision": [h["pl_precision"] for h in hist]}
    notes = "A-distance (lower = domains closer): " + ", ".join(
        f"{m} {extra['a_distance'][m]['mean']:.3f}" for m in methods)
    out = args.out or (str(Path("results") / "bp_triplet") if not args.quick else None)
    if out is None:
        raise SystemExit("--quick needs --out (it must not overwrite results/bp_triplet)")
    config = {"file": str(CONFIG.relative_to(HERE.parent)), "methods": {m: METHODS[m] for m in methods},
              "overrides": args.overrides, "quick": args.quick}
    write_summary("bp_triplet", "embedded digits: rendered fonts -> sklearn handwritten (8x8)",
                  "target top-1", rows, seeds, wall, config, out_dir=out, extra=extra, curves=curves,
                  notes=notes)
    print(json.dumps({m: {"top1": round(summarise(rows[m])[0], 2), "a_distance": round(summarise(a_dist[m])[0], 3)}
                      for m in methods}))
    print(f"wall {wall:.0f} s; summary in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
