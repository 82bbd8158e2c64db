"""``make reproduce PAPER=bp_triplet``: the embedded study, every method x seed, then the summary.

Without ``--data``: rendered-font digits -> scikit-learn handwritten digits (8x8, CPU), methods
``source_only``, ``dann``, ``plain_triplet`` (DANN + the same triplet likelihood with every weight 1)
and ``bp_triplet`` (DANN + the BP-Triplet loss), plus the ablations named in ``--methods``. Reports
final-iteration target top-1 (no model selection on target labels), and per row the proxy A-distance, the
joint error of the ideal hypothesis (lambda*, Ben-David's bound) and the pseudo-label coverage and precision at
every refresh (rows that train on none run the same labelling rule as a probe). The rendered source follows the
seed (``data.seed``). Claims (issue 17): bp_triplet >= source_only + 5, bp_triplet > plain_triplet and > dann,
each margin above the pooled seed std. With ``--data ROOT``: runs ``bp_triplet/scripts/<benchmark>.sh`` on the
real benchmark.
"""
from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from shared.cli import launch_script, parse_seeds, reproduce_parser
from shared.config import load_config
from shared.engine import Trainer
from shared.jobs import run_jobs
from shared.results import claim, summarise, write_summary

from .evaluate import evaluate_model
from .train import BPTripletConfig, BPTripletTask

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "configs" / "bp-triplet_embeddednet_1xb32-25e_digits-embedded.yaml"

# Each method is the embedded config plus these overrides (the issue's names first).
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
TUNING_LOGS = HERE.parent / "results" / "bp_triplet" / "tuning"  # bp_triplet.tune's committed logs
_LOG_FIELDS = {"grid", "method", "seed", "target_top1", "a_distance", "lambda_star", "shared_run"}


def tuning_trials(methods: list[str], log_dir: Path = TUNING_LOGS) -> dict[str, dict]:
    """How much validation search each row had (issue 17: the same tuning trials for every row), read from the
    committed logs of :mod:`bp_triplet.tune` (one JSON line per trained run, one file per grid).

    Per row: ``grid_settings``, the grid settings it was scored on (a grid's settings are the product of the
    values its log records for each axis); ``validation_seeds``; ``trained_runs``, the row's own runs (an axis
    that does not enter a row's training, such as the pseudo-label threshold for ``source_only`` and ``dann``,
    is not re-run for it). A row absent from every log (the ablations) was not tuned: zeros.
    """
    logs: dict[str, list[dict]] = {}
    for path in sorted(Path(log_dir).glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                logs.setdefault(rec["grid"], []).append(rec)
    cells = {g: int(np.prod([len({json.dumps(r[k]) for r in recs if k in r})
                             for k in sorted({k for r in recs for k in r} - _LOG_FIELDS)]))
             for g, recs in logs.items()}
    out = {}
    for m in methods:
        mine = {g: [r for r in recs if r["method"] == m] for g, recs in logs.items()}
        grids = [g for g, rs in mine.items() if rs]
        out[m] = {"grid_settings": sum(cells[g] for g in grids),
                  "validation_seeds": sorted({r["seed"] for g in grids for r in mine[g]}),
                  "trained_runs": sum(len(mine[g]) for g in grids)}
    return out


def run_one(method: str, seed: int, run_root: Path, quick: bool, extra: list[str] = ()) -> dict:
    """One method x seed in its own single-thread process (``--jobs`` of them share the cores)."""
    torch.set_num_threads(1)
    t0 = time.time()
    overrides = METHODS[method] + (QUICK if quick else []) + list(extra) + [f"engine.seed={seed}"]
    cfg = load_config(CONFIG, BPTripletConfig, overrides)
    task = BPTripletTask(cfg)
    trainer = Trainer(task, cfg, run_root / f"{method}_seed{seed}")
    trainer.fit()
    history = trainer.history
    res = evaluate_model(trainer.model, task.domains, trainer.device, seed, cfg.data.eval_batch_size)
    print(f"seed {seed} {method:22s} target top-1 {res['target_top1']:6.2f}  A-distance {res['a_distance']:.3f}"
          f"  lambda* {res['lambda_star']:.2f}  ({time.time() - t0:.0f} s)", flush=True)
    return {**res, "curve_top1": [float(r.get("target_top1", np.nan)) for r in history],
            "pseudo": task.pseudo_history}


def _nanmean(a, axis=None):
    """``np.nanmean`` that stays silent where nothing was ever kept (precision undefined: NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.asarray(a, dtype=float), axis=axis)


def _ms(v: list[float]) -> str:
    m, sd = summarise(v)
    return f"{m:.2f} ± {sd:.2f}"


def main(argv: list[str] | None = None) -> int:
    p = reproduce_parser("bp_triplet", __doc__.split("\n")[0], jobs=True)
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
    run_root = Path("runs") / "bp_triplet" / ("embedded_quick" if args.quick else "embedded")
    t0 = time.time()
    done = run_jobs(run_one, [((m, s), (m, s, run_root, args.quick, args.overrides)) for s in seeds for m in methods],
                    workers=max(1, args.jobs))
    results = {m: [done[(m, s)] for s in seeds] for m in methods}
    wall = time.time() - t0
    n_target = load_config(CONFIG, BPTripletConfig, list(args.overrides)).data.n_target
    target = (f"{n_target} of the 1,797 scikit-learn digits" if 0 < n_target < 1797
              else "all 1,797 scikit-learn digits")
    rows = {m: [r["target_top1"] for r in rs] for m, rs in results.items()}
    per_row = {k: {m: [r[k] for r in rs] for m, rs in results.items()}
               for k in ("a_distance", "lambda_star", "eps_source", "eps_target")}
    pl = {m: {k: [[h[k] for h in r["pseudo"]] for r in rs] for k in ("pl_coverage", "pl_precision")}
          for m, rs in results.items() if rs[0]["pseudo"]}
    extra = {
        **{k: {m: {"mean": round(summarise(v)[0], 4), "std": round(summarise(v)[1], 4),
                   "per_seed": [round(x, 4) for x in v]} for m, v in d.items()} for k, d in per_row.items()},
        "pseudo_labels": {m: [r["pseudo"] for r in rs] for m, rs in results.items() if rs[0]["pseudo"]},
        "tuning_trials": tuning_trials(methods),
        "protocol": f"final-iteration target top-1 (%) on the seed's target draw ({target}), no model selection; "
                    "A-distance 2(1-2 eps) of a logistic-regression domain classifier on bottleneck features; "
                    "lambda* = eps_S + eps_T (%) of one logistic regression fitted on both labelled domains' "
                    "bottleneck features, held-out halves; pseudo-label precision/coverage at every refresh "
                    "(source_only and dann: the same rule as a probe, never trained on); tuning_trials: the "
                    "validation search of bp_triplet.tune (results/bp_triplet/tuning/*.jsonl) per row",
    }
    claims = {}
    if {"source_only", "bp_triplet"} <= set(rows):
        claims["bp_triplet >= source_only + 5"] = claim(rows["bp_triplet"], rows["source_only"], 5.0)
    for other in ("plain_triplet", "dann"):
        if {other, "bp_triplet"} <= set(rows):
            claims[f"bp_triplet > {other}"] = claim(rows["bp_triplet"], rows[other])
    extra["claims"] = claims
    curves = {"target top-1 per epoch (seed mean)": {
        m: list(np.nanmean([r["curve_top1"] for r in rs], axis=0)) for m, rs in results.items()}}
    if pl:
        curves["pseudo-label precision per refresh (seed mean, %)"] = {
            m: list(_nanmean(v["pl_precision"], axis=0)) for m, v in pl.items()}
    lines = ["| method | target top-1 | A-distance | lambda* (eps_S + eps_T, %) | pseudo-label precision, "
             "first -> last refresh (%) | coverage, first -> last (%) |", "| --- |" + " --- |" * 5]
    for m in methods:
        prec = cov = "-"
        if m in pl:
            p0, p1 = [float(_nanmean([h[i] for h in pl[m]["pl_precision"]])) for i in (0, -1)]
            c0, c1 = [float(_nanmean([h[i] for h in pl[m]["pl_coverage"]])) for i in (0, -1)]
            prec, cov = f"{p0:.1f} -> {p1:.1f}", f"{c0:.1f} -> {c1:.1f}"
        lines.append(f"| {m} | {_ms(rows[m])} | {_ms(per_row['a_distance'][m])} | "
                     f"{_ms(per_row['lambda_star'][m])} | {prec} | {cov} |")
    lines.append("")
    for text, c in claims.items():
        lines.append(f"Claim {text}: {c['diff']:+.2f} points, pooled seed std {c['pooled_std']:.2f}: "
                     f"{'holds' if c['holds'] else 'does not hold'}.")
    notes = "\n".join(lines)
    out = args.out or (str(Path("results") / "bp_triplet") if not args.quick else None)
    if out is None:
        raise SystemExit("--quick needs --out (it must not overwrite results/bp_triplet)")
    config = {"file": str(CONFIG.relative_to(HERE.parent)), "methods": {m: METHODS[m] for m in methods},
              "overrides": args.overrides, "quick": args.quick}
    write_summary("bp_triplet", "embedded digits: rendered fonts -> sklearn handwritten (8x8)",
                  "target top-1", rows, seeds, wall, config, out_dir=out, extra=extra, curves=curves,
                  notes=notes)
    print(notes)
    print(f"wall {wall:.0f} s; summary in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
