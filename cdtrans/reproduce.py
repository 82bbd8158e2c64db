"""``make reproduce PAPER=cdtrans``: the whole CDTrans pipeline on the embedded digit domains.

Every seed starts from a shipped supervised encoder (``cdtrans/encoders/supervised_shapes_seed<k>.pth``, the
ImageNet-DeiT stand-in written by ``make pretrain PAPER=cdtrans``, read through ``model.imagenet_init`` like a
DeiT file; seed k uses encoder k mod 3). The data draw follows the seed (``data.seed``: the rendered source and
the target's ``data.n_target`` handwritten digits). Per seed: Stage A
(``source_only``) -> Stage-B arms from Stage A's last checkpoint: ``self_training`` (the same two-way
center-aware pairs, CE_s + CE_t, no fusion branch) and ``cdtrans`` (the triple branch with distillation).
Rows are last-epoch target accuracy (label-free); the oracle best epoch (what the official code reports) and the
pair precision at every refresh are kept beside them.

Suites (``--suite NAME``, each its own 600 s and results folder ``results/cdtrans[-NAME]``):

* ``default``     rows ``source_only``, ``self_training``, ``cdtrans``; claims: cdtrans >= source_only + 5,
                  cdtrans > self_training, self_training > source_only, each margin above the pooled seed std.
* ``pair_noise``  a share (0.2, 0.4) of the pairs re-paired at every refresh with a source image of another
                  class than the target's true class, pseudo label = that source's label (a wrong center-aware
                  match; ``uda.pair_noise``); rows ``self_training``/``cdtrans`` at 0, 0.2, 0.4; claim:
                  cdtrans loses less than self_training at 0.4 (per-seed drop from the noise-free row).
                  Stage A and the noise-free rows are the default suite's runs (``runs/reproduce/cdtrans``),
                  read back when they finished under the same config (alone the suite trains all 21 runs:
                  457 s on 2 cores, seeds 0-2).

With ``--data ROOT`` it runs the real benchmark's launch script instead (``--benchmark``, ``--gpus``).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from shared.cli import launch_script, parse_seeds, reproduce_dirs, reproduce_parser
from shared.config import load_config, to_dict
from shared.engine import Trainer
from shared.engine.trainer import config_changes
from shared.jobs import run_jobs
from shared.pretrain import pick_encoder
from shared.results import claim, write_summary

from .train import CDTransConfig, build_task

HERE = Path(__file__).resolve().parent
PRETRAIN_CFG = HERE / "configs" / "pretrain_vit-tiny-d64_1xb64-30e_digits.yaml"
UDA_CFG = HERE / "configs" / "cdtrans_vit-tiny-d64_1xb64-12e_digits.yaml"
ENCODERS = HERE / "encoders"
ENCODER_ARM = "supervised_shapes"
ARMS = {"self_training": ["uda.fusion=false"], "cdtrans": []}
for _share in (0.2, 0.4):
    ARMS[f"self_training_noise{_share}"] = ["uda.fusion=false", f"uda.pair_noise={_share}"]
    ARMS[f"cdtrans_noise{_share}"] = [f"uda.pair_noise={_share}"]
SUITES = {"default": ["self_training", "cdtrans"],
          "pair_noise": ["self_training", "cdtrans", "self_training_noise0.2", "cdtrans_noise0.2",
                         "self_training_noise0.4", "cdtrans_noise0.4"]}
SHARED_ARMS = ("source_only", "self_training", "cdtrans")  # the default suite's runs; other suites read them back
PRECISION_KEYS = ("precision_one_way", "precision_two_way", "precision_two_way_center_aware")
QUICK = ["engine.epochs=1", "engine.eval_every=1", "uda.update_every=1", "data.n_source=200"]
# The validation search behind the embedded recipe (README, "Hyper-parameters were chosen ..."), recorded per row in
# every summary: data seeds 100 and 101, two settings, Stage A 30 epochs (kept) and 15 epochs (stopped after its
# source_only and self_training rows, before its cdtrans rows). The noise rows reuse the recipe (the issue fixes the
# shares): no trial of their own.
TUNING_SEEDS = [100, 101]
TUNING_SETTINGS = {"source_only": 2, "self_training": 2, "cdtrans": 1}


def tuning_trials(methods: list[str]) -> dict[str, dict]:
    """Per row: the validation settings it was run with and on which data seeds (0 and [] for an untuned row)."""
    return {m: {"settings": TUNING_SETTINGS.get(m, 0), "validation_seeds": TUNING_SEEDS if m in TUNING_SETTINGS
                else []} for m in methods}


def stage_a_overrides(seed: int, init: str) -> list[str]:
    """Stage A's init: the shipped encoder of ``seed`` (``init='shipped'``), none (``'scratch'``) or a file."""
    if init == "scratch":
        return []
    path = pick_encoder(ENCODERS, ENCODER_ARM, seed) if init == "shipped" else Path(init)
    return [f"model.imagenet_init={path}"]


def finished_run(run_dir: Path, cfg: CDTransConfig) -> dict | None:
    """``{"history", "pairs"}`` of a run in ``run_dir`` that finished all its epochs under ``cfg``, else None: the
    engine's resume rule (:func:`shared.engine.trainer.config_changes`) finds no change, so a key its
    ``config.yaml`` lacks must hold its default. The suites share runs through it (:func:`run_job`)."""
    ck, saved = run_dir / "last.pt", run_dir / "config.yaml"
    if not (ck.is_file() and saved.is_file()) or config_changes(yaml.safe_load(saved.read_text()), to_dict(cfg),
                                                                 to_dict(CDTransConfig())):
        return None
    state = torch.load(ck, map_location="cpu", weights_only=True)
    if state.get("epoch") != cfg.engine.epochs:
        return None
    log = run_dir / "metrics.jsonl"
    lines = log.read_text().splitlines() if log.is_file() else []
    pairs = [json.loads(x)["pair_refresh"] for x in lines if '"pair_refresh"' in x]
    return {"history": state["history"], "pairs": pairs}


def run_job(seed: int, arm: str, run_root: Path, quick: bool, init: str = "shipped",
            overrides: list[str] = (), shared_root: Path | None = None) -> dict:
    """One engine run in its own process with one thread: Stage A (``arm='source_only'``) or a Stage-B arm.

    Tiny models gain nothing from intra-op threads, so two single-thread processes use the two cores.
    ``overrides`` (``--set``) apply to every run, after the arm's own. With ``shared_root`` (the default
    suite's seed folder), Stage A and the noise-free arms live there: a run that already finished there under
    the identical config is read back instead of trained again (the ``pair_noise`` suite after the default
    suite on the same seeds), else it is trained there.
    """
    torch.set_num_threads(1)
    t0 = time.time()
    stage_a_root = shared_root or run_root
    home = stage_a_root if arm in SHARED_ARMS else run_root
    common = ["logger.progress=false", f"engine.seed={seed}", f"data.seed={seed}"] + (QUICK if quick else [])
    if arm == "source_only":
        cfg = load_config(PRETRAIN_CFG, CDTransConfig, common + stage_a_overrides(seed, init) + list(overrides))
    else:
        cfg = load_config(UDA_CFG, CDTransConfig, common + ARMS[arm] + [
            f"model.init_checkpoint={stage_a_root / 'source_only' / 'last.pt'}"] + list(overrides))
    done = finished_run(home / arm, cfg) if shared_root else None
    reused = done is not None
    if done is None:
        # a fresh run in a fresh folder: the engine appends to metrics.jsonl, so training again where a run
        # (of another config, or the default suite's own re-run) left its log would mix two runs' pair refreshes
        shutil.rmtree(home / arm, ignore_errors=True)
        task = build_task(cfg)
        Trainer(task, cfg, home / arm).fit()
        history = torch.load(home / arm / "last.pt", map_location="cpu", weights_only=True)["history"]
        done = {"history": history, "pairs": getattr(task, "pair_log", [])}
    history = done["history"]
    out = {"seed": seed, "arm": arm, "history": history, "pairs": done["pairs"], "seconds": time.time() - t0,
           "reused": reused}
    msg = f"  seed {seed} {arm}: target acc {history[-1]['acc']:.2f}" + (f" (read back from {home / arm})"
                                                                           if reused else "")
    if out["pairs"]:
        msg += f", first-refresh pair precision {out['pairs'][0]['precision_used']:.1f} %"
    print(msg + f" ({out['seconds']:.0f} s)", flush=True)
    return out


def run_all(seeds: list[int], arms: list[str], run_root: Path, quick: bool, jobs: int, init: str = "shipped",
            overrides: list[str] = (), shared_root: Path | None = None) -> dict[int, dict]:
    """Stage A per seed, then its Stage-B arms as soon as it is done, ``jobs`` processes at a time.

    The three-branch (fusion) arms are started before the two-branch self-training ones, so that the shorter
    runs come last and the two workers finish close together (a job's numbers do not depend on its order).
    """
    names = ("source_only", *arms)
    order = ("source_only", *sorted(arms, key=lambda a: "uda.fusion=false" in ARMS[a]))  # stable: fusion first
    done = run_jobs(run_job, [((s, a), (s, a, run_root / f"seed{s}", quick, init, list(overrides),
                                        shared_root / f"seed{s}" if shared_root else None))
                              for a in order for s in seeds],
                    deps={(s, a): [(s, "source_only")] for s in seeds for a in arms}, workers=jobs)
    return {s: {a: done[(s, a)] for a in names} for s in seeds}


def suite_claims(suite: str, last: dict[str, list[float]]) -> dict[str, dict]:
    """The issue's claims for ``suite`` on the per-seed last-epoch accuracies."""
    if suite == "default":
        return {"cdtrans >= source_only + 5": claim(last["cdtrans"], last["source_only"], 5.0),
                "cdtrans > self_training": claim(last["cdtrans"], last["self_training"]),
                "self_training > source_only": claim(last["self_training"], last["source_only"])}
    drop = {a: [c - n for c, n in zip(last[a], last[f"{a}_noise0.4"])] for a in ("self_training", "cdtrans")}
    out = {"cdtrans loses less than self_training at 0.4": claim(drop["self_training"], drop["cdtrans"])}
    out["cdtrans loses less than self_training at 0.4"]["drops"] = drop
    return out


def main(argv: list[str] | None = None) -> int:
    p = reproduce_parser("cdtrans", __doc__.split("\n")[0], jobs=True)
    p.add_argument("--benchmark", default="office31", choices=["office31", "officehome", "visda", "domainnet"],
                   help="with --data: which benchmark script to launch")
    p.add_argument("--suite", default="default", choices=list(SUITES),
                   help="default (source_only, self_training, cdtrans) or pair_noise; own results folder")
    p.add_argument("--init", default="shipped", metavar="shipped|scratch|FILE",
                   help="Stage A's start: the shipped supervised encoders (default), a from-scratch ViT, or a file")
    args = p.parse_args(argv)
    if args.data:
        return launch_script(HERE / "scripts" / f"{args.benchmark}.sh", args.data, args.gpus, overrides=args.overrides)
    if args.init not in ("shipped", "scratch") and not Path(args.init).is_file():
        raise SystemExit(f"--init: {args.init}: no such file (shipped, scratch or a DeiT-layout .pth)")
    seeds = parse_seeds(args.seeds)
    name = "cdtrans" if args.suite == "default" else f"cdtrans-{args.suite}"
    out_dir, run_root = reproduce_dirs(name, args)
    arms = SUITES[args.suite]
    start = time.time()
    print(f"{name} embedded reproduction: seeds {seeds}, init {args.init} -> {out_dir}", flush=True)
    # pair_noise: Stage A and the noise-free arms are the default suite's runs (same folders, read back when
    # they finished under the identical config); --quick keeps everything under its own --out.
    shared_root = None if args.suite == "default" or args.quick else Path("runs") / "reproduce" / "cdtrans"
    res = run_all(seeds, arms, run_root, args.quick, max(1, args.jobs), args.init, args.overrides, shared_root)
    methods = ["source_only", *arms]
    hist = {m: [res[s][m]["history"] for s in seeds] for m in methods}
    last = {m: [h[-1]["acc"] for h in hist[m]] for m in methods}
    best = {m: [max(e["acc"] for e in h if "acc" in e) for h in hist[m]] for m in methods}
    pairs = {m: {s: res[s][m]["pairs"] for s in seeds} for m in arms}
    precision = {k: float(np.mean([pairs["cdtrans"][s][0][k] for s in seeds])) for k in PRECISION_KEYS}
    used = {m: [float(np.mean([r["precision_used"] for r in pairs[m][s]])) for s in seeds] for m in arms}
    claims = suite_claims(args.suite, last)
    lines = ["Last-epoch target accuracy (label-free). Oracle best epoch (selected on target labels, as the "
             "official code reports): " + ", ".join(f"{m} {np.mean(v):.2f}" for m, v in best.items()) + ".", "",
             "Pair precision at the first refresh of `cdtrans` (share of pairs whose true target label equals the "
             "source label, %): " + ", ".join(f"{k.removeprefix('precision_')} {v:.1f}" for k, v in precision.items())
             + ".", "", "Precision of the pairs trained on, mean over refreshes and seeds (%): "
             + ", ".join(f"{m} {np.mean(v):.1f}" for m, v in used.items()) + ".", ""]
    for text, c in claims.items():
        lines.append(f"Claim {text}: {c['diff']:+.2f} points, pooled seed std {c['pooled_std']:.2f}: "
                     f"{'holds' if c['holds'] else 'does not hold'}.")
    title = f"target acc over Stage-B epochs (seed {seeds[0]})"
    curves = {title: {m: [e["acc"] for e in hist[m][0] if "acc" in e] for m in arms}}
    curves_x = {title: [e["epoch"] for e in hist[arms[0]][0] if "acc" in e]}
    write_summary(
        name, "digits: rendered fonts -> sklearn handwritten (8x8)", "target top-1 accuracy", last, seeds,
        time.time() - start, {"pretrain": str(PRETRAIN_CFG.relative_to(HERE.parent)),
                              "uda": str(UDA_CFG.relative_to(HERE.parent)), "init": args.init,
                              "overrides": args.overrides, "suite": args.suite, "quick": args.quick},
        out_dir=out_dir, notes="\n".join(lines), curves=curves, curves_x=curves_x, curves_xlabel="epoch",
        extra={"claims": claims, "suite": args.suite, "tuning_trials": tuning_trials(methods),
               "oracle_best_epoch": {m: {"mean": float(np.mean(v)), "per_seed": v} for m, v in best.items()},
               "pair_precision_first_refresh": precision, "pair_precision_used": used,
               "pair_refreshes": {m: {str(s): v for s, v in pairs[m].items()} for m in arms},
               "run_seconds": {m: [round(res[s][m]["seconds"], 1) for s in seeds] for m in methods},
               "read_back": {m: [bool(res[s][m].get("reused")) for s in seeds] for m in methods}})
    print((out_dir / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
