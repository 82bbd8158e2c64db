"""``make reproduce PAPER=transreid_ssl ARGS="--suite usl_uda"``: USL and UDA by cluster contrast on SynPerson.

Per seed, two SynPerson draws (the data draw follows the seed):

* the **target** (seed ``s``; the main reproduction's cameras): its train images are used *without labels*, its
  query/gallery score every row (Market protocol, mAP %);
* the **source** (seed ``s + 10000``): other identities under six other cameras (their own backgrounds, gains and
  gammas at the target's colour-cast strength, so the source model is a competent ReID model in its own domain, as
  the paper's source models are): labelled.

Rows (all scored at their last epoch):

* ``usl_scratch``  -- cluster contrast on the target from a random initialisation;
* ``usl``          -- the same from the shipped DINO encoder ``encoders/dino_full_seed<s mod 3>.pth`` (pre-trained on
  an unlabelled SynPerson pool by ``make pretrain PAPER=transreid_ssl``; sha256-checked, never pre-trained here);
* ``uda_direct``   -- the supervised source model applied to the target (direct transfer);
* ``uda``          -- cluster contrast on the target started from that source model (classifier and BN-neck
  dropped, as the official UDA).

Claims of the paper: ``usl`` > ``usl_scratch`` (pre-training carries over to USL) and ``uda`` > ``uda_direct``, each
by more than the pooled seed std (``claims`` in summary.json, :func:`shared.results.claim`). The cluster count per
epoch and the pseudo labels' adjusted Rand index against the (never used) identities are logged
(``clusters_per_epoch``, ``pseudo_ari_per_epoch``) and drawn beside the bars for the first seed.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from shared.config import load_config
from shared.engine import Trainer
from shared.jobs import run_jobs
from shared.results import claim, tuning_line, write_summary

from .train import TransReIDSSLConfig, build_task

HERE = Path(__file__).resolve().parent
REID_CFG = HERE / "configs" / "transreid_vit-tiny-d64_1xb32-12e_synperson.yaml"
USL_CFG = HERE / "configs" / "usl_vit-tiny-d64_1xb64-12e_synperson.yaml"
ROWS = ["usl_scratch", "usl", "uda_direct", "uda"]
SOURCE_SEED, SOURCE_CAM_STRENGTH = 10000, 0.5
# job -> (config, prerequisites)
JOBS = {"src": (REID_CFG, []), "usl_scratch": (USL_CFG, []), "usl": (USL_CFG, []), "uda": (USL_CFG, ["src"])}
# Tuning effort per row (summary.json ``tuning_trials``; README "Embedded USL / UDA suite", point 5): the three
# cluster-contrast rows share one search, lr {1e-4, 3e-4} x DBSCAN eps {0.4, 0.5} on validation draws 100 and 101,
# chosen by the mean validation mAP of the three rows; uda_direct is the source model of the main fine-tuning
# recipe, no search of its own. Probes that chose nothing are named in ``probes``.
_LOOP_SEARCH = "lr {1e-4, 3e-4} x eps {0.4, 0.5} on draws 100/101, shared by usl_scratch, usl and uda (kept 1e-4, 0.5)"
_SHOT_PROBE = "data.background=shot on draws 100/101 (the whole suite; not adopted)"
TUNING_TRIALS = {
    "usl_scratch": {"settings": 4, "validation_runs": 8, "search": _LOOP_SEARCH, "probes": _SHOT_PROBE},
    "usl": {"settings": 4, "validation_runs": 8, "search": _LOOP_SEARCH, "probes": _SHOT_PROBE},
    "uda_direct": {"settings": 1, "validation_runs": 0,
                   "search": "none: the main fine-tuning recipe on the source draw", "probes": _SHOT_PROBE},
    "uda": {"settings": 4, "validation_runs": 8, "search": _LOOP_SEARCH,
            "probes": _SHOT_PROBE + "; six 4-epoch diagnostics on draw 100 (true labels in place of DBSCAN, pad, lr, "
                                    "eps), which chose nothing"},
}
QUICK = ["data.n_train_ids=8", "data.n_test_ids=8", "data.pool_size=64", "engine.epochs=1", "sched.warmup_epochs=0",
         "usl.iters=2", "usl.k1=6", "usl.eps=0.7", "engine.batch_size=16"]


def _overrides(job: str, seed: int, run: Path, quick: bool, extra: list[str] = ()) -> list[str]:
    """A job's config overrides; ``extra`` (``--set``) goes to every job, source model included."""
    out = ["logger.progress=false", f"engine.seed={seed}", f"data.seed={seed}"]
    if job == "src":
        out = ["logger.progress=false", f"engine.seed={seed}", f"data.seed={seed + SOURCE_SEED}",
               f"data.cam_strength={SOURCE_CAM_STRENGTH}"]
    if job == "usl":
        from .pretrain import encoder_for

        out.append(f"model.pretrained={encoder_for('dino_full', seed)}")
    if job == "uda":
        out.append(f"usl.init_checkpoint={run / 'src' / 'last.pt'}")
    return out + (QUICK if quick else []) + list(extra)


def run_job(seed: int, job: str, run: Path, quick: bool, extra: list[str] = ()) -> dict:
    """One engine run, single thread (two processes share the two cores)."""
    from .train import reid_metrics, synperson_for

    torch.set_num_threads(1)
    t0 = time.time()
    cfg = load_config(JOBS[job][0], TransReIDSSLConfig, _overrides(job, seed, run, quick, extra))
    trainer = Trainer(build_task(cfg), cfg, run / job)
    trainer.fit()
    out = {"seed": seed, "job": job, "history": trainer.history}
    if job == "src":  # direct transfer: the source model on the target test set
        target = load_config(USL_CFG, TransReIDSSLConfig, _overrides("usl_scratch", seed, run, quick, extra))
        t = synperson_for(target.data, target.model.img_size)
        out["target"] = reid_metrics(trainer.model, t.query, t.gallery, cfg.model.img_size, 512, "cpu")
    if cfg.stage == "usl":
        rows = _cluster_rows(run / job)
        out["clusters"] = [r["clusters"] for r in rows]
        out["pseudo_ari"] = [round(r["pseudo_ari"], 4) for r in rows]
    out["seconds"] = time.time() - t0
    last = out["target"] if job == "src" else trainer.history[-1]
    if "mAP" in last:
        print(f"  seed {seed} {job}: mAP {last['mAP']:.2f}" + (f", clusters {out['clusters']}" if "clusters" in out
                                                                else "") + f" ({out['seconds']:.0f} s)", flush=True)
    return out


def _cluster_rows(run_dir: Path) -> list[dict]:
    import json

    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "clusters" in r]


def main(args) -> int:
    from shared.cli import parse_seeds, reproduce_dirs

    seeds = parse_seeds(args.seeds)
    out_dir, run_root = reproduce_dirs("transreid_ssl-usl_uda", args)
    import shutil

    shutil.rmtree(run_root, ignore_errors=True)
    start = time.time()
    print(f"transreid_ssl suite usl_uda: seeds {seeds} -> {out_dir}", flush=True)
    extra = list(getattr(args, "overrides", None) or [])
    done = run_jobs(run_job, [((s, j), (s, j, run_root / f"seed{s}", args.quick, extra)) for j in JOBS for s in seeds],
                    deps={(s, j): [(s, d) for d in JOBS[j][1]] for j in JOBS for s in seeds},
                    workers=max(1, args.jobs))
    rows = {"usl_scratch": [done[(s, "usl_scratch")]["history"][-1]["mAP"] for s in seeds],
            "usl": [done[(s, "usl")]["history"][-1]["mAP"] for s in seeds],
            "uda_direct": [done[(s, "src")]["target"]["mAP"] for s in seeds],
            "uda": [done[(s, "uda")]["history"][-1]["mAP"] for s in seeds]}
    loops = ("usl_scratch", "usl", "uda")
    clusters = {j: {s: done[(s, j)]["clusters"] for s in seeds} for j in loops}
    aris = {j: {s: done[(s, j)]["pseudo_ari"] for s in seeds} for j in loops}
    claims = {"usl > usl_scratch": claim(rows["usl"], rows["usl_scratch"]),
              "uda > uda_direct": claim(rows["uda"], rows["uda_direct"])}
    target_cfg = load_config(USL_CFG, TransReIDSSLConfig, _overrides("usl_scratch", seeds[0], run_root, args.quick,
                                                                     extra))
    n_ids = target_cfg.data.n_train_ids
    paired = {f"{a} - {b}": [x - y for x, y in zip(rows[a], rows[b])] for a, b in (("usl", "usl_scratch"),
                                                                                   ("uda", "uda_direct"))}

    def ms(v):
        return f"{np.mean(v):.2f} ± {np.std(v, ddof=1) if len(v) > 1 else 0.0:.2f}"

    notes = ("Claims (diff vs pooled seed std): " + "; ".join(
        f"{k} {c['diff']:+.2f} vs {c['pooled_std']:.2f}: {'holds' if c['holds'] else 'does not hold'}"
        for k, c in claims.items()) + ".\n\n"
        "Paired per-seed differences, mAP points: " + "; ".join(
        f"{k}: {ms(v)} ({', '.join(f'{x:+.1f}' for x in v)})" for k, v in paired.items()) + ".\n\n"
        "Clusters per epoch (seed " + str(seeds[0]) + "): " + ", ".join(
            f"{j} {clusters[j][seeds[0]]}" for j in clusters) + f" (the target's train set has {n_ids} identities); "
        "adjusted Rand index of the pseudo labels to the identities at the last clustering, mean over seeds: "
        + ", ".join(f"{j} {np.mean([aris[j][s][-1] for s in seeds]):.3f}" for j in aris) + ".\n\n"
        "The DINO encoder of `usl` is the shipped `dino_full` encoder of pre-training seed (seed mod 3).\n\n"
        + tuning_line(TUNING_TRIALS))
    curves = {f"clusters per epoch (seed {seeds[0]}; {n_ids} identities)": {j: clusters[j][seeds[0]] for j in loops},
              f"pseudo-label ARI to the identities (seed {seeds[0]})": {j: aris[j][seeds[0]] for j in loops}}
    write_summary(
        "transreid_ssl-usl_uda", "SynPerson 64x32: target = main draw (unlabelled), source = other ids and cameras",
        "mAP (Market protocol)", rows, seeds, time.time() - start,
        {"usl": str(USL_CFG.relative_to(HERE.parent)), "dino": "transreid_ssl/encoders/dino_full_seed<s mod 3>.pth",
         "reid": str(REID_CFG.relative_to(HERE.parent)), "source_seed_offset": SOURCE_SEED,
         "source_cam_strength": SOURCE_CAM_STRENGTH, "overrides": extra, "quick": args.quick},
        out_dir=out_dir, notes=notes, curves=curves, curves_xlabel="epoch",
        curves_x={t: list(range(1, len(clusters["usl"][seeds[0]]) + 1)) for t in curves},
        extra={"claims": claims, "clusters_per_epoch": clusters, "pseudo_ari_per_epoch": aris,
               "paired_differences": paired, "tuning_trials": TUNING_TRIALS,
               "job_seconds": {s: {j: round(done[(s, j)]["seconds"], 1) for j in JOBS} for s in seeds}})
    print((out_dir / "summary.md").read_text())
    return 0
