"""Embedded reproduction: SynVideo, a tiny CNN, teacher V2V then image students, 3 seeds, <= 300 s on 2 cores.

    make reproduce PAPER=tcl_i2v                 # embedded default (nothing downloaded)
    make reproduce PAPER=tcl_i2v ARGS="--data /data/mars --gpus 4"   # real MARS via scripts/mars.sh

Arms (spec 8; metric = I2V mAP, student encodes query and gallery, cosine, trapezoidal AP):
``teacher (V2V)``, ``S0 image-only``, ``S1 VKD``, ``S3 TCL``, ``S4 TCL + ML (A)``, ``S5 TCL random
triplets``. Each seed trains its teacher first (stage 1), then the students from that teacher (stage 2).
The loop is plain PyTorch around :meth:`tcl_i2v.train.KDTask.training_step` (same losses as the engine
runs; the engine's checkpointing/logging costs more than these 3-second runs).
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from shared.cli import launch_script, parse_seeds, reproduce_dirs, reproduce_parser
from shared.data.samplers import IdentitySampler
from shared.jobs import run_jobs
from shared.results import write_summary

from .data import synvideo
from .train import KDConfig, KDTask, TCLConfig

ARMS = {
    "S0 image-only": dict(method="image"),
    "S0 image-only, 8 frames/step": dict(method="image", student_all_frames=True),
    "S1 VKD (KD + SimDist)": dict(method="vkd"),
    "S2 TKP (F + D)": dict(method="tkp"),
    "S3 TCL": dict(method="tcl"),
    "S4 TCL + ML (A)": dict(method="tcl", ml="A"),
    "S5 TCL random triplets": dict(method="tcl", tcl_mining="random"),
    "S4 TCL + ML (A) tau 0.5": dict(method="tcl", ml="A", tcl_tau=0.5),
}
EMBEDDED = dict(train_ids=80, test_ids=60, epochs_teacher=30, epochs_student=30, lr=1e-3, batch=32,
                widths=[24, 48, 64, 96], student_init="scratch")
QUICK = dict(train_ids=12, test_ids=8, epochs_teacher=1, epochs_student=1, lr=1e-3, batch=16, widths=[8, 8, 8, 8],
             student_init="vkd")


def _cfg(seed: int, kd: dict, p: dict, epochs: int) -> TCLConfig:
    cfg = TCLConfig()
    cfg.engine.seed, cfg.engine.epochs, cfg.engine.batch_size, cfg.engine.device = seed, epochs, p["batch"], "cpu"
    cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay = "adam", p["lr"], 1e-5
    cfg.model.backbone, cfg.model.tiny_widths = "tiny", list(p["widths"])
    d = cfg.data
    d.dataset, d.seed, d.train_ids, d.test_ids, d.height, d.width = "synvideo", 0, p["train_ids"], p["test_ids"], 32, 16
    cfg.kd = replace(KDConfig(), **{"student_init": p["student_init"], **kd})
    return cfg


def fit(cfg: TCLConfig, splits: dict, ckpt_in: str = "", ckpt_out: str = "") -> dict[str, float]:
    """Train one arm with Adam (VKD: lr, wd 1e-5, constant lr at this length) and evaluate it."""
    torch.manual_seed(cfg.engine.seed)
    cfg.kd.teacher_ckpt = ckpt_in
    task = KDTask(cfg, splits)
    model = task.build_model()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], cfg.optim.lr,
                           weight_decay=cfg.optim.weight_decay)
    sampler = IdentitySampler(task.dataset.labels, cfg.engine.batch_size, cfg.data.num_instances, seed=cfg.engine.seed)
    model.train()
    for epoch in range(cfg.engine.epochs):
        sampler.set_epoch(epoch)
        for batch in DataLoader(task.train_dataset(epoch), batch_size=cfg.engine.batch_size, sampler=sampler,
                                drop_last=True):
            loss = task.training_step(model, batch)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    if ckpt_out:
        torch.save({"model": model.state_dict()}, ckpt_out)
    return task.evaluate(model)


def run_job(seed: int, arm: str, p: dict, run_root: str) -> dict[str, float]:
    torch.set_num_threads(1)
    splits = synvideo(p["train_ids"], p["test_ids"], seed=0, size=(32, 16))
    teacher = str(Path(run_root) / f"teacher_seed{seed}.pt")
    if arm == "teacher":
        Path(run_root).mkdir(parents=True, exist_ok=True)
        return fit(_cfg(seed, dict(method="v2v"), p, p["epochs_teacher"]), splits, ckpt_out=teacher)
    return fit(_cfg(seed, ARMS[arm], p, p["epochs_student"]), splits, ckpt_in=teacher)


def main(argv=None) -> int:
    parser = reproduce_parser("tcl_i2v", __doc__, jobs=True)
    args = parser.parse_args(argv)
    if args.data:
        return launch_script(Path(__file__).parent / "scripts" / "mars.sh", args.data, args.gpus,
                             overrides=args.overrides)
    seeds, p = parse_seeds(args.seeds), (QUICK if args.quick else EMBEDDED)
    out_dir, run_root = reproduce_dirs("tcl_i2v", args)
    t0 = time.time()
    jobs = [((s, "teacher"), (s, "teacher", p, str(run_root))) for s in seeds]
    jobs += [((s, a), (s, a, p, str(run_root))) for a in ARMS for s in seeds]
    res = run_jobs(run_job, jobs, deps={(s, a): [(s, "teacher")] for a in ARMS for s in seeds}, workers=args.jobs)
    wall = time.time() - t0
    rows = {"teacher V2V (video query)": [res[(s, "teacher")]["v2v/mAP"] for s in seeds],
            "teacher I2V": [res[(s, "teacher")]["i2v_teacher/mAP"] for s in seeds]}
    rows |= {a: [res[(s, a)]["i2v/mAP"] for s in seeds] for a in ARMS}
    extra = {"rank1": {a: [res[(s, a)]["i2v/rank1"] for s in seeds] for a in ARMS},
             "i2v_tkp_protocol_mAP": {a: [res[(s, a)].get("i2v_tkp/mAP", float("nan")) for s in seeds] for a in ARMS}}
    for name, vals in rows.items():
        t = torch.tensor(vals)
        print(f"{name:28s} mAP {t.mean():6.2f} +- {t.std() if len(vals) > 1 else 0:5.2f}")
    write_summary("tcl_i2v", "SynVideo I2V (embedded)", "mAP", rows, seeds, wall, {"sizes": p, "arms": ARMS},
                  out_dir=out_dir, extra=extra,
                  notes="I2V: first-frame image queries vs 8-frame tracklet gallery, both by the student; cosine, "
                        "trapezoidal AP, gallery augmented with the queries (MARS protocol).")
    print(f"wall {wall:.1f} s -> {out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
