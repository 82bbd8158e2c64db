"""``make pretrain PAPER=transreid_ssl``: the shipped SynPerson encoders that ``make reproduce`` fine-tunes.

The paper fine-tunes a DINO ViT-S/16 pre-trained for days on LUPerson (released as a flat backbone file). The
embedded stand-in is a tiny ViT (patch 8, D 64, 4 blocks, 4 heads, 64x32 inputs) pre-trained here once per arm
and seed; each teacher backbone is written with flat ViT keys, the layout of the converted LUPerson files, and
read back by ``transreid_ssl.checkpoints.load_backbone`` exactly as a user's file is. Arms (``<arm>_seed<k>.pth``):

* ``dino_full``          DINO on the whole unlabelled SynPerson pool of data seed k (half person-like);
* ``dino_random50``      DINO on a random half of that pool, the same epochs (half the compute, as the paper);
* ``dino_cfs50``         DINO on the CFS top half: theta_0 = the ``dino_full`` teacher, theta_1 = it fine-tuned on
                         the labelled train ids (the reproduce fine-tuning recipe), ranked by Catastrophic
                         Forgetting Score; the same epochs as ``dino_random50``;
* ``supervised_generic`` the same ViT trained with labels (cross-entropy, 20 classes) on generic non-person images
                         (:func:`transreid_ssl.synperson.generic_images`): the ImageNet-supervised stand-in; the
                         same number of steps and batch as ``dino_full``; written as a timm classifier file
                         (flat keys + ``head.*``, which the loader skips as it skips an ImageNet head).

Every run lives in ``runs/pretrain/transreid_ssl/seed<k>/<job>`` and resumes with ``--resume auto`` (default).
Progress: one bar over every job's epochs with ``--jobs`` > 1 (the default 2), the engine's bar per epoch with 1.
The recipe is ``configs/dino_vit-tiny-d64_1xb64-pretrain_synperson.yaml``; the manifest
``transreid_ssl/encoders/manifest.json`` records every file's recipe, data, seed, wall time, git SHA, sha256,
and every development attempt.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shared.config import load_config
from shared.engine import Task, Trainer
from shared.jobs import run_jobs
from shared.pretrain import (
    engine_bars,
    git_sha,
    overall_progress,
    pick_encoder,
    pretrain_parser,
    record_encoder,
    save_encoder,
    teacher_backbone,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PRE_CFG = HERE / "configs" / "dino_vit-tiny-d64_1xb64-pretrain_synperson.yaml"
REID_CFG = HERE / "configs" / "transreid_vit-tiny-d64_1xb32-12e_synperson.yaml"
ENCODERS = HERE / "encoders"
N_SHIPPED = 3  # pre-training seeds shipped per arm
ARMS = ["dino_full", "dino_random50", "dino_cfs50", "supervised_generic"]
# job -> (arm it writes or None, jobs it needs)
JOBS = {"pre_full": ("dino_full", []), "ft_full": (None, ["pre_full"]), "pre_cfs50": ("dino_cfs50", ["ft_full"]),
        "pre_random50": ("dino_random50", []), "sup_generic": ("supervised_generic", [])}
ARM_JOBS = {"dino_full": ["pre_full"], "dino_random50": ["pre_random50"],
            "dino_cfs50": ["pre_full", "ft_full", "pre_cfs50"], "supervised_generic": ["sup_generic"]}
QUICK = ["data.n_train_ids=8", "data.n_test_ids=8", "data.pool_size=64", "engine.epochs=1", "dino.warmup_epochs=0",
         "engine.batch_size=16"]
N_GENERIC_CLASSES = 20
SYNPERSON_DEFAULTS = {"clutter": 0, "background": "camera", "id_cues": "colour"}  # named in the manifest if changed


def encoder_for(row: str, seed: int, encoders: Path = ENCODERS) -> Path:
    """The shipped init of ``row`` for fine-tuning seed ``seed``: pre-training seed ``seed`` if shipped, else
    ``seed mod 3`` (sha256-checked)."""
    return pick_encoder(encoders, row, seed, N_SHIPPED)


def encoder_name(arm: str, seed: int) -> str:
    return f"{arm}_seed{seed}.pth"


def pre_overrides(seed: int, quick: bool) -> list[str]:
    return ["logger.progress=false", f"engine.seed={seed}", f"data.seed={seed}"] + (QUICK if quick else [])


def _pretrain_cfg(seed: int, quick: bool, extra: list[str] = ()):
    from .train import TransReIDSSLConfig

    return load_config(PRE_CFG, TransReIDSSLConfig, pre_overrides(seed, quick) + list(extra))


class GenericSupervisedTask(Task):
    """Cross-entropy pre-training of the tiny ViT on :func:`~transreid_ssl.synperson.generic_images` (the
    ImageNet-supervised stand-in). Same image size, batch and number of steps as the DINO arm."""

    def __init__(self, cfg, n_images: int, seed: int):
        from .data import ReIDDataset, ReIDSplit, reid_train_transform
        from .synperson import generic_images

        self.cfg = cfg
        imgs, labels = generic_images(n_images, 10_000 + seed, tuple(cfg.model.img_size),
                                      cam_strength=cfg.data.cam_strength)
        self.dataset = ReIDDataset(ReIDSplit(imgs, labels, [0] * len(labels)),
                                   reid_train_transform(tuple(cfg.model.img_size), cfg.data.pad, cfg.data.re_prob))

    def build_model(self) -> nn.Module:
        from .train import build_backbone

        backbone = build_backbone(self.cfg.model, self.cfg.model.drop_path_rate)
        return nn.ModuleDict({"backbone": backbone, "head": nn.Linear(backbone.embed_dim, N_GENERIC_CLASSES)})

    def train_dataset(self, epoch: int):
        return self.dataset

    def training_step(self, model, batch, trainer):
        x, y = batch[0], batch[1]
        logits = model["head"](model["backbone"](x))
        return {"loss": F.cross_entropy(logits, y), "acc": (logits.argmax(1) == y).float().mean()}


def _supervised_cfg(seed: int, quick: bool, overrides: list[str] = ()):
    """The supervised arm's run config: the fine-tuning recipe's optimiser, the DINO arm's steps and batch."""
    from .train import TransReIDSSLConfig

    pre = _pretrain_cfg(seed, quick, overrides)
    e = pre.engine
    return load_config(REID_CFG, TransReIDSSLConfig, pre_overrides(seed, quick) + [
        f"engine.epochs={e.epochs}", f"engine.batch_size={e.batch_size}", "engine.eval_every=0",
        f"data.pool_size={pre.data.pool_size}"]), pre.data.pool_size


def cfs_ranking(run: Path, seed: int, quick: bool, overrides: list[str] = ()) -> tuple[Path, dict]:
    """Rank the pool by CFS with theta_0 = ``pre_full`` teacher, theta_1 = ``ft_full``; write the ranking."""
    from .cfs import cfs_order, person_precision, score_split, write_ranking
    from .checkpoints import load_backbone, load_reid_checkpoint
    from .model import ReIDModel
    from .synperson import POOL_KINDS
    from .train import build_backbone, pool_name, synperson_for

    cfg = _pretrain_cfg(seed, quick, overrides)
    syn = synperson_for(cfg.data, cfg.model.img_size)
    theta0 = build_backbone(cfg.model, 0.0)
    load_backbone(theta0, run / "pre_full" / "last.pt")
    theta1 = ReIDModel(build_backbone(cfg.model, 0.0), syn.train.num_pids)
    load_reid_checkpoint(theta1, run / "ft_full" / "last.pt")
    order = cfs_order(score_split(theta0, theta1.base, syn.pool, cfg.model.img_size))
    path = write_ranking([pool_name(i) for i in range(len(syn.pool))], order, run / "cfs_ranking.txt")
    top = order[: len(order) // 2]
    kept = {f"kept_{k}": float(100.0 * np.isin(np.flatnonzero(syn.pool_kind == i), top).mean())
            for i, k in enumerate(POOL_KINDS)}
    return path, {"person_precision_top50": person_precision(order, syn.pool_is_person, 0.5)} | kept


def frozen_map(seed: int, quick: bool, path: Path | None, overrides: list[str] = ()) -> float:
    """Test mAP of a frozen backbone file (no fine-tuning): a health check of a pre-trained encoder."""
    from .checkpoints import load_backbone
    from .train import build_backbone, reid_metrics, synperson_for

    cfg = _pretrain_cfg(seed, quick, overrides)
    syn = synperson_for(cfg.data, cfg.model.img_size)
    net = build_backbone(cfg.model, 0.0)
    if path is not None:
        load_backbone(net, path)
    return float(reid_metrics(net, syn.query, syn.gallery, cfg.model.img_size, 512, "cpu")["mAP"])


def run_job(seed: int, job: str, run: Path, quick: bool, resume: str | None, overrides: list[str] = ()) -> dict:
    """One engine run of one seed (single thread: ``--jobs`` processes share the cores)."""
    from .train import TransReIDSSLConfig, build_task

    torch.set_num_threads(1)
    t0 = time.time()
    out: dict = {"seed": seed, "job": job}
    ov = list(overrides)
    pool = _pretrain_cfg(seed, quick, ov).data.pool_size
    if job == "pre_full":
        cfg = _pretrain_cfg(seed, quick, ov)
        task = build_task(cfg)
    elif job == "pre_random50":
        cfg = _pretrain_cfg(seed, quick, ov + ["data.subset=random", f"data.keep_num={pool // 2}",
                                               f"data.subset_seed={seed}"])
        task = build_task(cfg)
    elif job == "pre_cfs50":
        ranking, out["cfs"] = cfs_ranking(run, seed, quick, ov)
        cfg = _pretrain_cfg(seed, quick, ov + [f"data.filter_list={ranking}", f"data.keep_num={pool // 2}"])
        task = build_task(cfg)
    elif job == "ft_full":  # theta_1 fine-tunes on the same SynPerson variant (``--set data.*``) as the pool's
        cfg = load_config(REID_CFG, TransReIDSSLConfig, pre_overrides(seed, quick) + [
            f"data.pool_size={pool}", f"model.pretrained={run / 'pre_full' / 'last.pt'}"]
            + [o for o in ov if o.startswith("data.")])
        task = build_task(cfg)
    elif job == "sup_generic":
        cfg, n = _supervised_cfg(seed, quick, ov)
        task = GenericSupervisedTask(cfg, n, seed)
    else:
        raise ValueError(f"unknown job {job!r}")
    if not resume:
        shutil.rmtree(run / job, ignore_errors=True)
    Trainer(task, cfg, run / job, resume="auto" if resume and (run / job / "last.pt").is_file() else None).fit()
    out["history"] = torch.load(run / job / "last.pt", map_location="cpu", weights_only=True)["history"]
    out["seconds"] = time.time() - t0
    last = out["history"][-1]
    msg = ", ".join(f"{k.removeprefix('train/')} {v:.3f}" for k, v in last.items()
                    if isinstance(v, float) and k != "epoch")
    print(f"  seed {seed} {job}: {msg} ({out['seconds']:.0f} s)", flush=True)
    return out


def export(seed: int, job: str, res: dict, run: Path, out_dir: Path, quick: bool, command: str,
           overrides: list[str] = ()) -> dict:
    """Write ``<arm>_seed<k>.pth`` (released layout) and its manifest entry; returns the entry."""
    arm = JOBS[job][0]
    ckpt = run / job / "last.pt"
    if job == "sup_generic":
        sd = torch.load(ckpt, map_location="cpu", weights_only=True)["model"]
        sd = {k.removeprefix("backbone."): v for k, v in sd.items()}  # head.* stays: a timm classifier file
    else:
        sd = teacher_backbone(ckpt)
    path = out_dir / encoder_name(arm, seed)
    info = save_encoder(sd, path)
    cfg = _pretrain_cfg(seed, quick, overrides)
    last = res["history"][-1]
    entry = {
        "arm": arm, "seed": seed, "file_layout": "flat ViT backbone keys (converted LUPerson DINO layout)"
        + ("; + head.* (timm classifier)" if job == "sup_generic" else ""),
        "recipe": str(PRE_CFG.relative_to(ROOT)) if job != "sup_generic" else
        f"{REID_CFG.relative_to(ROOT)} optimiser, CE on generic_images, steps/batch of {PRE_CFG.name}",
        "data": (f"transreid_ssl.synperson.make_synperson(seed={seed}, pool_size={cfg.data.pool_size}"
                 + "".join(f", {k}={getattr(cfg.data, k)!r}" for k, v in SYNPERSON_DEFAULTS.items()
                           if getattr(cfg.data, k) != v) + ").pool"
                 + {"pre_full": "", "pre_random50": " (random half, subset_seed = seed)",
                    "pre_cfs50": " (CFS top half)"}.get(job, "")) if job != "sup_generic" else
        f"transreid_ssl.synperson.generic_images(n={cfg.data.pool_size}, seed={10_000 + seed}), 20 classes",
        "epochs": int(last["epoch"]) if "epoch" in last else None,
        "wall_seconds": round(res["seconds"] + (res.get("dep_seconds") or 0.0), 1), "git_sha": git_sha(),
        "command": command, "last_epoch": {k: round(v, 4) for k, v in last.items() if isinstance(v, float)},
        "frozen_test_mAP": round(frozen_map(seed, quick, path, overrides), 2),
    } | info
    if "cfs" in res:
        entry["cfs"] = {k: round(v, 2) for k, v in res["cfs"].items()}
    record_encoder(out_dir / "manifest.json", path.name, entry)
    print(f"  wrote {path} ({info['bytes'] / 2 ** 20:.2f} MB, sha256 {info['sha256'][:12]}..., frozen test mAP "
          f"{entry['frozen_test_mAP']:.2f})", flush=True)
    return entry


def job_epochs(seed: int, job: str, quick: bool, overrides: list[str] = ()) -> int:
    """How many epochs ``job`` trains (the overall progress bar's share of it); the overrides as :func:`run_job`."""
    from .train import TransReIDSSLConfig

    if job == "ft_full":
        return load_config(REID_CFG, TransReIDSSLConfig, pre_overrides(seed, quick)
                           + [o for o in overrides if o.startswith("data.")]).engine.epochs
    return _pretrain_cfg(seed, quick, list(overrides)).engine.epochs  # sup_generic: the DINO arm's epochs


def main(argv: list[str] | None = None) -> int:
    args = pretrain_parser("transreid_ssl", ARMS, __doc__.split("\n")[0]).parse_args(argv)
    from shared.cli import parse_seeds

    seeds = parse_seeds(args.seeds)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    bad = [a for a in arms if a not in ARMS]
    if bad:
        raise SystemExit(f"--arms: unknown {', '.join(bad)} (choose from {', '.join(ARMS)})")
    out_dir = Path(args.out) if args.out else ENCODERS
    run_root = Path(args.run_root) if args.run_root else ROOT / "runs" / "pretrain" / "transreid_ssl"
    resume = None if args.resume == "none" else "auto"
    jobs = sorted({j for a in arms for j in ARM_JOBS[a]}, key=list(JOBS).index)
    print(f"transreid_ssl pre-training: arms {arms}, seeds {seeds} -> {out_dir} (runs in {run_root})", flush=True)
    t0 = time.time()
    bars = engine_bars(args.jobs)  # --jobs 1: the engine's bar per epoch; several jobs: one bar over all their epochs
    epochs = {run_root / f"seed{s}" / j: job_epochs(s, j, args.quick, args.overrides) for j in jobs for s in seeds}
    with overall_progress(epochs, enabled=args.jobs > 1):
        done = run_jobs(run_job, [((s, j), (s, j, run_root / f"seed{s}", args.quick, resume, args.overrides + bars))
                                  for j in jobs for s in seeds],
                        deps={(s, j): [(s, d) for d in JOBS[j][1] if d in jobs] for j in jobs for s in seeds},
                        workers=max(1, args.jobs))
    for s in seeds:
        for j in jobs:
            if JOBS[j][0] in arms:
                res = dict(done[(s, j)])
                if j == "pre_cfs50":  # the CFS arm also costs theta_0 and theta_1
                    res["dep_seconds"] = done[(s, "pre_full")]["seconds"] + done[(s, "ft_full")]["seconds"]
                cmd = f"make pretrain PAPER=transreid_ssl SEEDS={s} ARGS='--arms {JOBS[j][0]}" + (
                    f" --set {' '.join(args.overrides)}'" if args.overrides else "'")
                export(s, j, res, run_root / f"seed{s}", out_dir, args.quick, cmd, args.overrides)
    print(f"done in {time.time() - t0:.0f} s; manifest {out_dir / 'manifest.json'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
