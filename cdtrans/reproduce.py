"""``make reproduce PAPER=cdtrans``: the whole CDTrans pipeline on the embedded digit domains.

Per seed: Stage A (source only) -> Stage B arms started from Stage A's last checkpoint:
``self_training`` (same two-way center-aware pairs, CE_s + CE_t, no fusion branch) and ``cdtrans`` (the
triple branch with distillation). Reports last-epoch target accuracy (label-free), the oracle best epoch
(what the official code reports), and the precision of the pseudo-label pairs at the first refresh
(one-way vs two-way vs two-way + center-aware) against the target's true labels.

With ``--data ROOT`` it runs the real benchmark's launch script instead (``--benchmark``, ``--gpus``).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from shared.cli import launch_script, parse_seeds, reproduce_dirs, reproduce_parser
from shared.config import load_config
from shared.engine import Trainer
from shared.jobs import run_jobs
from shared.results import write_summary

from .train import CDTransConfig, build_task

HERE = Path(__file__).resolve().parent
PRETRAIN_CFG = HERE / "configs" / "pretrain_vit-tiny-d64_1xb64-30e_digits.yaml"
UDA_CFG = HERE / "configs" / "cdtrans_vit-tiny-d64_1xb64-12e_digits.yaml"
ARMS = {"self_training": ["uda.fusion=false"], "cdtrans": []}
PRECISION_KEYS = ("precision_one_way", "precision_two_way", "precision_two_way_center_aware")
QUICK = ["engine.epochs=1", "engine.eval_every=1", "uda.update_every=1", "data.n_source=200"]


def run_job(seed: int, arm: str, run_root: Path, quick: bool) -> dict:
    """One engine run in its own process with one thread: Stage A (``arm='source_only'``) or a Stage-B arm.

    Tiny models gain nothing from intra-op threads, so two single-thread processes use the two cores.
    """
    torch.set_num_threads(1)
    t0 = time.time()
    common = ["logger.progress=false", f"engine.seed={seed}"] + (QUICK if quick else [])
    if arm == "source_only":
        cfg = load_config(PRETRAIN_CFG, CDTransConfig, common)
    else:
        cfg = load_config(UDA_CFG, CDTransConfig,
                          common + ARMS[arm] + [f"model.init_checkpoint={run_root / 'source_only' / 'last.pt'}"])
    task = build_task(cfg)
    Trainer(task, cfg, run_root / arm).fit()
    history = torch.load(run_root / arm / "last.pt", map_location="cpu", weights_only=True)["history"]
    out = {"seed": seed, "arm": arm, "history": history, "pairs": getattr(task, "pair_log", []),
           "seconds": time.time() - t0}
    msg = f"  seed {seed} {arm}: target acc {history[-1]['acc']:.2f}"
    if out["pairs"]:
        msg += f", first-refresh pair precision {out['pairs'][0]['precision_used']:.1f} %"
    print(msg + f" ({out['seconds']:.0f} s)", flush=True)
    return out


def run_all(seeds: list[int], run_root: Path, quick: bool, jobs: int) -> dict[int, dict]:
    """Stage A per seed, then its Stage-B arms as soon as it is done, ``jobs`` processes at a time."""
    arms = ("source_only", *ARMS)
    done = run_jobs(run_job, [((s, arm), (s, arm, run_root / f"seed{s}", quick)) for arm in arms for s in seeds],
                    deps={(s, arm): [(s, "source_only")] for s in seeds for arm in ARMS}, workers=jobs)
    return {s: {arm: done[(s, arm)] for arm in arms} for s in seeds}


def main(argv: list[str] | None = None) -> int:
    p = reproduce_parser("cdtrans", __doc__.split("\n")[0], jobs=True)
    p.add_argument("--benchmark", default="office31", choices=["office31", "officehome", "visda", "domainnet"],
                   help="with --data: which benchmark script to launch")
    args = p.parse_args(argv)
    if args.data:
        return launch_script(HERE / "scripts" / f"{args.benchmark}.sh", args.data, args.gpus, overrides=args.overrides)
    seeds = parse_seeds(args.seeds)
    out_dir, run_root = reproduce_dirs("cdtrans", args)
    start = time.time()
    print(f"cdtrans embedded reproduction: seeds {seeds} -> {out_dir}", flush=True)
    res = run_all(seeds, run_root, args.quick, max(1, args.jobs))
    per_seed = [{arm: res[s][arm]["history"] for arm in res[s]} | {"cdtrans_pairs": res[s]["cdtrans"]["pairs"]}
                for s in seeds]
    methods = ["source_only", *ARMS]
    last = {m: [r[m][-1]["acc"] for r in per_seed] for m in methods}
    best = {m: [max(h["acc"] for h in r[m] if "acc" in h) for r in per_seed] for m in methods}
    precision = {k: float(np.mean([r["cdtrans_pairs"][0][k] for r in per_seed])) for k in PRECISION_KEYS}
    gain = np.mean(last["cdtrans"]) - np.mean(last["source_only"])
    notes = ("Last-epoch target accuracy (label-free). Oracle best epoch (selected on target labels, as the "
             "official code reports): " + ", ".join(f"{m} {np.mean(v):.2f}" for m, v in best.items()) + ".\n\n"
             "Pair precision at the first refresh (share of pairs whose true target label equals the source "
             "label, %): " + ", ".join(f"{k.removeprefix('precision_')} {v:.1f}" for k, v in precision.items())
             + f".\n\ncdtrans - source_only = {gain:+.2f} points (seed mean).")
    title = "target acc over Stage-B epochs (seed 0)"
    curves = {title: {m: [h["acc"] for h in per_seed[0][m] if "acc" in h] for m in ARMS}}
    curves_x = {title: [h["epoch"] for h in per_seed[0]["cdtrans"] if "acc" in h]}
    write_summary(
        "cdtrans", "digits: rendered fonts -> sklearn handwritten (8x8)", "target top-1 accuracy", last, seeds,
        time.time() - start, {"pretrain": str(PRETRAIN_CFG.relative_to(HERE.parent)),
                              "uda": str(UDA_CFG.relative_to(HERE.parent)), "quick": args.quick},
        out_dir=out_dir, notes=notes, curves=curves, curves_x=curves_x, curves_xlabel="epoch",
        extra={"oracle_best_epoch": {m: {"mean": float(np.mean(v)), "per_seed": v} for m, v in best.items()},
               "pair_precision_first_refresh": precision,
               "pair_refreshes": {s: r["cdtrans_pairs"] for s, r in zip(seeds, per_seed)}})
    print((out_dir / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
