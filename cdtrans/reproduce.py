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

from shared.cli import launch_script, parse_seeds, reproduce_parser
from shared.config import load_config
from shared.engine import Trainer
from shared.results import RESULTS, write_summary

from .data import build_domains
from .train import CDTransConfig, build_task

HERE = Path(__file__).resolve().parent
PRETRAIN_CFG = HERE / "configs" / "pretrain_vit-tiny-d64_1xb64-20e_digits.yaml"
UDA_CFG = HERE / "configs" / "cdtrans_vit-tiny-d64_1xb64-12e_digits.yaml"
ARMS = {"self_training": ["uda.fusion=false"], "cdtrans": []}
PRECISION_KEYS = ("precision_one_way", "precision_two_way", "precision_two_way_center_aware")
QUICK = ["engine.epochs=1", "engine.eval_every=1", "uda.update_every=1", "data.n_source=200"]


def run_seed(seed: int, run_root: Path, quick: bool) -> dict:
    common = ["logger.progress=false", f"engine.seed={seed}"] + (QUICK if quick else [])
    cfg_a = load_config(PRETRAIN_CFG, CDTransConfig, common)
    d = cfg_a.data
    domains = build_domains(d.name, d.root, d.source, d.target, d.seed, d.n_source, d.shift)
    task_a = build_task(cfg_a, domains=domains)
    t0 = time.time()
    hist_a = _fit(task_a, cfg_a, run_root / "pretrain")
    out = {"source_only": hist_a}
    print(f"  seed {seed} source_only: target acc {hist_a[-1]['acc']:.2f} ({time.time() - t0:.0f} s)", flush=True)
    for arm, extra in ARMS.items():
        t0 = time.time()
        cfg_b = load_config(UDA_CFG, CDTransConfig,
                            common + extra + [f"model.init_checkpoint={run_root / 'pretrain' / 'last.pt'}"])
        task_b = build_task(cfg_b, domains=domains)
        out[arm] = _fit(task_b, cfg_b, run_root / arm)
        out[f"{arm}_pairs"] = task_b.pair_log
        print(f"  seed {seed} {arm}: target acc {out[arm][-1]['acc']:.2f}, first-refresh pair precision "
              f"{task_b.pair_log[0]['precision_used']:.1f} % ({time.time() - t0:.0f} s)", flush=True)
    return out


def _fit(task, cfg, run_dir: Path) -> list[dict]:
    Trainer(task, cfg, run_dir).fit()
    return torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)["history"]


def main(argv: list[str] | None = None) -> int:
    p = reproduce_parser("cdtrans", __doc__.split("\n")[0])
    p.add_argument("--benchmark", default="office31", choices=["office31", "officehome", "visda", "domainnet"],
                   help="with --data: which benchmark script to launch")
    args = p.parse_args(argv)
    if args.data:
        return launch_script(HERE / "scripts" / f"{args.benchmark}.sh", args.data, args.gpus)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    seeds = parse_seeds(args.seeds)
    out_dir = Path(args.out) if args.out else RESULTS / "cdtrans"
    run_root = out_dir / "runs" if args.quick else Path("runs") / "reproduce" / "cdtrans"
    start = time.time()
    print(f"cdtrans embedded reproduction: seeds {seeds} -> {out_dir}", flush=True)
    per_seed = [run_seed(s, run_root / f"seed{s}", args.quick) for s in seeds]
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
    curves = {"target acc over Stage-B epochs (seed 0)": {
        m: [h["acc"] for h in per_seed[0][m] if "acc" in h] for m in ARMS}}
    write_summary(
        "cdtrans", "digits: rendered fonts -> sklearn handwritten (8x8)", "target top-1 accuracy", last, seeds,
        time.time() - start, {"pretrain": str(PRETRAIN_CFG.relative_to(HERE.parent)),
                              "uda": str(UDA_CFG.relative_to(HERE.parent)), "quick": args.quick},
        out_dir=out_dir, notes=notes, curves=curves,
        extra={"oracle_best_epoch": {m: {"mean": float(np.mean(v)), "per_seed": v} for m, v in best.items()},
               "pair_precision_first_refresh": precision,
               "pair_refreshes": {s: r["cdtrans_pairs"] for s, r in zip(seeds, per_seed)}})
    print((out_dir / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
