"""``make reproduce PAPER=transreid_ssl``: DINO pre-training, CFS selection and the ICS stem on SynPerson.

Per seed (SynPerson generated in-process from the seed; spec section 8, tests 2-4), five rows, all
fine-tuned with the same supervised recipe and evaluated with the Market protocol (mAP, %):

* ``scratch``        -- supervised from random init (patchify stem);
* ``scratch_ics``    -- the same with the IBN conv stem (ICS);
* ``dino_full``      -- DINO on the whole unlabelled pool (half person-like, half off-domain), then fine-tune;
* ``dino_cfs50``     -- DINO on the CFS top 50% of the pool, then fine-tune. theta_0 = the ``dino_full``
  teacher, theta_1 = its fine-tuned model (as the authors: a short full-data DINO run, fine-tuned);
* ``dino_random50``  -- DINO on a random 50% (the control CFS must beat), then fine-tune.

Also reported: the share of person-like images in the CFS top 50% (random: 50%), which fixes the sign of
the reconstructed score. Dropped for the budget: ICS + DINO pre-training, the BN-only stem (``model.stem=ics_bn``).
USL/UDA are the suite ``--suite usl_uda`` (:mod:`transreid_ssl.suite_usl_uda`). With ``--data ROOT`` it runs the
real benchmark scripts instead.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import torch

from shared.cli import launch_script, parse_seeds, reproduce_dirs, reproduce_parser
from shared.config import load_config
from shared.engine import Trainer
from shared.jobs import run_jobs
from shared.results import write_summary

from .train import TransReIDSSLConfig, build_task, pool_name, synperson_for

HERE = Path(__file__).resolve().parent
DINO_CFG = HERE / "configs" / "dino_vit-tiny-d64_1xb32-10e_synperson.yaml"
REID_CFG = HERE / "configs" / "transreid_vit-tiny-d64_1xb32-12e_synperson.yaml"
ROWS = ["scratch", "scratch_ics", "dino_full", "dino_cfs50", "dino_random50"]
# job -> (stage, prerequisites); run in this priority order (the CFS chain is the critical path)
JOBS = {
    "pre_full": ("dino", []), "ft_full": ("reid", ["pre_full"]), "pre_cfs50": ("dino", ["pre_full", "ft_full"]),
    "ft_cfs50": ("reid", ["pre_cfs50"]), "pre_random50": ("dino", []), "ft_random50": ("reid", ["pre_random50"]),
    "scratch": ("reid", []), "scratch_ics": ("reid", []),
}
ROW_JOB = {"scratch": "scratch", "scratch_ics": "scratch_ics", "dino_full": "ft_full", "dino_cfs50": "ft_cfs50",
           "dino_random50": "ft_random50"}
QUICK = ["data.n_train_ids=8", "data.n_test_ids=8", "data.pool_size=64", "engine.epochs=1", "dino.warmup_epochs=0",
         "sched.warmup_epochs=0"]


def _overrides(job: str, seed: int, run: Path, quick: bool, pool: int) -> list[str]:
    common = ["logger.progress=false", f"engine.seed={seed}", f"data.seed={seed}"] + (QUICK if quick else [])
    if job == "pre_cfs50":
        return common + [f"data.filter_list={run / 'cfs_ranking.txt'}", f"data.keep_num={pool // 2}"]
    if job == "pre_random50":
        return common + ["data.subset=random", f"data.keep_num={pool // 2}", f"data.subset_seed={seed}"]
    if job.startswith("ft_"):
        return common + [f"model.pretrained={run / job.replace('ft_', 'pre_') / 'last.pt'}"]
    if job == "scratch_ics":
        return common + ["model.stem=ics"]
    return common


def cfs_select(run: Path, cfg: TransReIDSSLConfig) -> dict[str, float]:
    """Score the pool with theta_0 = ``pre_full`` teacher and theta_1 = ``ft_full``; write the ranking.

    Returns, per pool kind (person, texture, background, two_person), the share (%) of that kind's images
    that made the top 50% (random ranking: 50 each; ideal: 100 for persons, 0 for the rest)."""
    from .cfs import cfs_order, person_precision, score_split, write_ranking
    from .checkpoints import load_backbone, load_reid_checkpoint
    from .model import ReIDModel
    from .synperson import POOL_KINDS
    from .train import build_backbone

    syn = synperson_for(cfg.data, cfg.model.img_size)
    theta0 = build_backbone(cfg.model, 0.0)
    load_backbone(theta0, run / "pre_full" / "last.pt")
    theta1 = ReIDModel(build_backbone(cfg.model, 0.0), syn.train.num_pids)
    load_reid_checkpoint(theta1, run / "ft_full" / "last.pt")
    order = cfs_order(score_split(theta0, theta1.base, syn.pool, cfg.model.img_size))
    write_ranking([pool_name(i) for i in range(len(syn.pool))], order, run / "cfs_ranking.txt")
    top = order[: len(order) // 2]
    kept = {k: float(100.0 * np.isin(np.flatnonzero(syn.pool_kind == i), top).mean()) for i, k in enumerate(POOL_KINDS)}
    return {"person_precision_top50": person_precision(order, syn.pool_is_person, 0.5)} | {
        f"kept_{k}": v for k, v in kept.items()}


def frozen_backbone_map(cfg: TransReIDSSLConfig, ckpt: Path | None) -> float:
    """Test mAP of the frozen DINO teacher backbone (no fine-tuning; spec test 2's kNN check), or of a
    randomly initialised one when ``ckpt`` is None."""
    from .checkpoints import load_backbone
    from .train import build_backbone, reid_metrics

    syn = synperson_for(cfg.data, cfg.model.img_size)
    net = build_backbone(cfg.model, 0.0)
    if ckpt is not None:
        load_backbone(net, ckpt)
    return reid_metrics(net, syn.query, syn.gallery, cfg.model.img_size, 512, "cpu")["mAP"]


def run_job(seed: int, job: str, run: Path, quick: bool) -> dict:
    """One engine run (single thread: two processes use the two cores)."""
    torch.set_num_threads(1)
    t0 = time.time()
    stage = JOBS[job][0]
    base = load_config(DINO_CFG if stage == "dino" else REID_CFG, TransReIDSSLConfig,
                       _overrides("pre_full", seed, run, quick, 0))
    out = {"seed": seed, "job": job}
    if job == "pre_cfs50":
        out["cfs"] = cfs_select(run, base)
    cfg = load_config(DINO_CFG if stage == "dino" else REID_CFG, TransReIDSSLConfig,
                      _overrides(job, seed, run, quick, base.data.pool_size))
    Trainer(build_task(cfg), cfg, run / job).fit()
    out["history"] = torch.load(run / job / "last.pt", map_location="cpu", weights_only=True)["history"]
    if stage == "dino":
        out["knn_mAP"] = frozen_backbone_map(cfg, run / job / "last.pt")
        if job == "pre_full":
            torch.manual_seed(seed)
            out["knn_mAP_random_init"] = frozen_backbone_map(cfg, None)
    out["seconds"] = time.time() - t0
    last = out["history"][-1]
    msg = (f"mAP {last['mAP']:.2f} R1 {last['rank1']:.2f}" if stage == "reid" else
           f"loss {last['train/loss']:.3f}, teacher entropy {last['train/teacher_entropy']:.2f} (batch-mean "
           f"{last['train/teacher_mean_entropy']:.2f}), frozen-teacher mAP {out['knn_mAP']:.2f}")
    if "cfs" in out:
        msg += f", CFS top-50% person-like {out['cfs']['person_precision_top50']:.1f} %"
    print(f"  seed {seed} {job}: {msg} ({out['seconds']:.0f} s)", flush=True)
    return out


def run_all(seeds: list[int], run_root: Path, quick: bool, jobs: int) -> dict[int, dict]:
    """Every (seed, job), dependencies first, ``jobs`` single-thread processes; CFS-chain jobs go first."""
    done = run_jobs(run_job, [((s, j), (s, j, run_root / f"seed{s}", quick)) for j in JOBS for s in seeds],
                    deps={(s, j): [(s, d) for d in JOBS[j][1]] for j in JOBS for s in seeds}, workers=jobs)
    return {s: {j: done[(s, j)] for j in JOBS} for s in seeds}


def main(argv: list[str] | None = None) -> int:
    p = reproduce_parser("transreid_ssl", __doc__.split("\n")[0], jobs=True)
    p.add_argument("--benchmark", default="market1501", choices=["market1501", "msmt17"],
                   help="with --data: which fine-tuning benchmark script to launch")
    p.add_argument("--suite", default=None, choices=["usl_uda"],
                   help="an extra study with its own budget: usl_uda (USL and UDA by cluster contrast, "
                        "results/transreid_ssl-usl_uda/)")
    args = p.parse_args(argv)
    if args.suite == "usl_uda" and not args.data:
        from .suite_usl_uda import main as suite_main

        return suite_main(args)
    if args.data:
        return launch_script(HERE / "scripts" / f"{args.benchmark}.sh", args.data, args.gpus)
    seeds = parse_seeds(args.seeds)
    out_dir, run_root = reproduce_dirs("transreid_ssl", args)
    shutil.rmtree(run_root, ignore_errors=True)  # no stale rankings / appended logs from an earlier run
    start = time.time()
    print(f"transreid_ssl embedded reproduction: seeds {seeds} -> {out_dir}", flush=True)
    res = run_all(seeds, run_root, args.quick, max(1, args.jobs))
    last = {r: [res[s][ROW_JOB[r]]["history"][-1]["mAP"] for s in seeds] for r in ROWS}
    rank1 = {r: [res[s][ROW_JOB[r]]["history"][-1]["rank1"] for s in seeds] for r in ROWS}
    cfs = {k: [res[s]["pre_cfs50"]["cfs"][k] for s in seeds] for k in res[seeds[0]]["pre_cfs50"]["cfs"]}
    prec = cfs["person_precision_top50"]
    pre_jobs = ("pre_full", "pre_cfs50", "pre_random50")
    dino_loss = {j: [res[s][j]["history"][-1]["train/loss"] for s in seeds] for j in pre_jobs}
    entropy = {j: [res[s][j]["history"][-1]["train/teacher_entropy"] for s in seeds] for j in pre_jobs}
    knn = {"random_init": [res[s]["pre_full"]["knn_mAP_random_init"] for s in seeds]} | {
        j.removeprefix("pre_"): [res[s][j]["knn_mAP"] for s in seeds] for j in pre_jobs}
    paired = {f"{a} - {b}": [x - y for x, y in zip(last[a], last[b])] for a, b in (
        ("scratch_ics", "scratch"), ("dino_full", "scratch"), ("dino_cfs50", "dino_full"),
        ("dino_cfs50", "dino_random50"), ("dino_random50", "dino_full"))}

    def ms(v):
        return f"{np.mean(v):.2f} ± {np.std(v, ddof=1) if len(v) > 1 else 0.0:.2f}"

    notes = ("Rank-1 (%): " + ", ".join(f"{r} {ms(v)}" for r, v in rank1.items()) + ".\n\n"
             f"CFS top-50% person-like share: {ms(prec)} % (random ranking: 50 %; spec expects >= 80 %). Share of "
             "each pool kind kept in the top 50% (random: 50): "
             + ", ".join(f"{k.removeprefix('kept_')} {ms(v)}" for k, v in cfs.items() if k.startswith("kept_"))
             + ".\n\n"
             "Last-epoch DINO loss (ln K = ln 512 = 6.24): "
             + ", ".join(f"{j.removeprefix('pre_')} {ms(v)}" for j, v in dino_loss.items())
             + "; mean per-sample teacher entropy: "
             + ", ".join(f"{j.removeprefix('pre_')} {ms(v)}" for j, v in entropy.items()) + ".\n\n"
             "Frozen DINO teacher, no fine-tuning, test mAP: " + ", ".join(f"{k} {ms(v)}" for k, v in knn.items())
             + ".\n\nPaired per-seed differences (same data per seed), mAP points: "
             + "; ".join(f"{k}: {ms(v)} ({', '.join(f'{x:+.1f}' for x in v)})" for k, v in paired.items()) + ".")
    title = f"DINO loss per epoch (seed {seeds[0]})"
    curves = {title: {j: [h["train/loss"] for h in res[seeds[0]][j]["history"]] for j in dino_loss}}
    write_summary(
        "transreid_ssl", "SynPerson 64x32 (80 + 80 ids, 6 cams, pool 600)", "mAP (Market protocol)", last, seeds,
        time.time() - start,
        {"dino": str(DINO_CFG.relative_to(HERE.parent)), "reid": str(REID_CFG.relative_to(HERE.parent)),
         "quick": args.quick},
        out_dir=out_dir, notes=notes, curves=curves, curves_xlabel="epoch",
        curves_x={title: [h["epoch"] for h in res[seeds[0]]["pre_full"]["history"]]},
        extra={"rank1": {r: {"mean": float(np.mean(v)), "per_seed": v} for r, v in rank1.items()},
               "cfs_person_precision_top50": {"mean": float(np.mean(prec)), "per_seed": prec},
               "cfs_kept_share_by_kind": {k: v for k, v in cfs.items() if k.startswith("kept_")},
               "dino_last_loss": dino_loss, "dino_last_teacher_entropy": entropy, "frozen_teacher_mAP": knn,
               "paired_differences": paired,
               "job_seconds": {s: {j: round(r["seconds"], 1) for j, r in res[s].items()} for s in seeds}})
    print((out_dir / "summary.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
