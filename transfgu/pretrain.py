"""``make pretrain PAPER=transfgu``: the shipped tiny DINO ViT/8 encoders that ``make reproduce`` starts from.

TransFGU starts from DINO ViT-S/8 pre-trained on ImageNet (``dino_deitsmall8_pretrain.pth``, a flat backbone
state dict). The embedded stand-in: a ViT with patch 8, D 64, 4 blocks, 4 heads, trained with DINO
(``shared.dino``) on a pool of textured scenes of pre-training seed k (a draw disjoint from the reproduce
scenes), written as ``dino_vit8_seed<k>.pth`` in the released flat layout with its position embedding stored
for the global-crop size (as DINO stores 28x28 for 224), and read back by ``transfgu.model.load_dino_encoder``
(strict) exactly as a user's file is.

    python -m shared.pretrain transfgu [--seeds 0,1,2] [--resume auto|none] [--jobs 2] [--debug]

Recipe: ``configs/dino_vit-tiny-p8-d64_1xb64-pretrain_scenes.yaml`` (official DINO mechanics: per-tensor clip 3,
last layer frozen in epoch 0, cosine lr / wd / momentum; the miniature settings kept for transreid_ssl's
encoders: tau_t .04 constant, ``norm_last_layer`` true, peak lr 2e-3, m0 .98 -- DINO ViT-S/8's own tau_t .04 -> .07
warm-up with a free last layer collapsed here, manifest attempt a); runs in ``runs/pretrain/transfgu/seed<k>``
(``--quick``: ``runs/pretrain/transfgu-quick``, files included); manifest ``transfgu/encoders/manifest.json``.
One progress bar over every seed's epochs (the engine's own bar per epoch with ``--jobs 1``); any failure is one line
(``--debug``: traceback).
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from shared.config import load_config
from shared.dino import DINOConfig, DINOMultiCrop, DINOTask
from shared.engine import RunConfig, Trainer
from shared.jobs import run_jobs
from shared.pretrain import (
    engine_bars,
    git_sha,
    overall_progress,
    pretrain_parser,
    record_encoder,
    save_encoder,
    teacher_backbone,
)

from .data import render_scene
from .model import create_encoder

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PRE_CFG = HERE / "configs" / "dino_vit-tiny-p8-d64_1xb64-pretrain_scenes.yaml"
ENCODERS = HERE / "encoders"
RUN_ROOT = ROOT / "runs" / "pretrain" / "transfgu"
QUICK_ROOT = ROOT / "runs" / "pretrain" / "transfgu-quick"  # --quick runs and files (never shipped)
ARMS = ["dino_vit8"]
POOL_SEED_OFFSET = 50_000  # pre-training scenes of seed k: textured_scenes draw 50_000 + k (reproduce uses others)
QUICK = ["data.n_images=32", "data.size=32", "engine.epochs=1", "engine.batch_size=8", "dino.warmup_epochs=0",
         "dino.n_local=1", "dino.local_size=[16,16]", "model.global_size=32"]


@dataclass
class EncoderConfig:
    embed_dim: int = 64
    depth: int = 4
    num_heads: int = 4
    patch_size: int = 8
    global_size: int = 64  # global crop side = the size the position embedding is stored for
    drop_path_rate: float = 0.1


@dataclass
class SceneDataConfig:
    n_images: int = 3000
    size: int = 96  # scene side (the reproduce scenes' size)
    seed: int = 0  # pool draw = POOL_SEED_OFFSET + seed


@dataclass
class FGUPretrainConfig(RunConfig):
    model: EncoderConfig = field(default_factory=EncoderConfig)
    data: SceneDataConfig = field(default_factory=SceneDataConfig)
    dino: DINOConfig = field(default_factory=DINOConfig)


def scene_pool(n: int, seed: int, size: int) -> np.ndarray:
    """``(n, size, size, 3)`` uint8 textured scenes (labels dropped: DINO sees none)."""
    rng = np.random.default_rng(POOL_SEED_OFFSET + seed)
    return np.stack([(render_scene(size, rng)[0] * 255).round().astype(np.uint8) for _ in range(n)])


class SceneCrops(Dataset):
    """Items ``(crops, 0)``: DINO multi-crop views of one scene."""

    def __init__(self, images: np.ndarray, crops: DINOMultiCrop):
        self.images, self.crops = images, crops

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.crops(Image.fromarray(self.images[i])), 0


def build_encoder(m: EncoderConfig, drop_path_rate: float = 0.0) -> torch.nn.Module:
    return create_encoder(m.embed_dim, m.depth, m.num_heads, m.patch_size, pretrain_size=m.global_size,
                          drop_path_rate=drop_path_rate)


def build_task(cfg: FGUPretrainConfig) -> DINOTask:
    g, m = cfg.dino, cfg.model
    crops = DINOMultiCrop.from_config(g, (m.global_size, m.global_size))
    dataset = SceneCrops(scene_pool(cfg.data.n_images, cfg.data.seed, cfg.data.size), crops)
    return DINOTask(cfg, dataset, lambda dpr: build_encoder(m, dpr), m.drop_path_rate)


def pretrain_cfg(seed: int, quick: bool, extra: list[str] = ()) -> FGUPretrainConfig:
    return load_config(PRE_CFG, FGUPretrainConfig, ["logger.progress=false", f"engine.seed={seed}",
                                                    f"data.seed={seed}"] + (QUICK if quick else []) + list(extra))


def run_job(seed: int, run: Path, quick: bool, resume: str | None, overrides: list[str] = ()) -> dict:
    torch.set_num_threads(1)
    t0 = time.time()
    cfg = pretrain_cfg(seed, quick, overrides)
    if not resume:
        shutil.rmtree(run, ignore_errors=True)
    Trainer(build_task(cfg), cfg, run, resume="auto" if resume and (run / "last.pt").is_file() else None).fit()
    hist = torch.load(run / "last.pt", map_location="cpu", weights_only=True)["history"]
    print(f"  seed {seed}: loss {hist[-1]['train/loss']:.3f}, teacher entropy {hist[-1]['train/teacher_entropy']:.2f}"
          f" ({time.time() - t0:.0f} s)", flush=True)
    return {"history": hist, "seconds": time.time() - t0}


def main(argv: list[str] | None = None) -> int:
    args = pretrain_parser("transfgu", ARMS, __doc__.split("\n")[0]).parse_args(argv)
    from shared.cli import parse_seeds

    seeds = parse_seeds(args.seeds)
    if [a for a in args.arms.split(",") if a.strip() and a.strip() not in ARMS]:
        raise SystemExit(f"--arms: transfgu has one arm, {ARMS[0]}")
    # --quick files are never shipped: without --out / --run-root they go beside the runs, not over encoders/
    out_dir = Path(args.out) if args.out else (QUICK_ROOT / "encoders" if args.quick else ENCODERS)
    run_root = Path(args.run_root) if args.run_root else (QUICK_ROOT if args.quick else RUN_ROOT)
    resume = None if args.resume == "none" else "auto"
    print(f"transfgu pre-training: seeds {seeds} -> {out_dir} (runs in {run_root})", flush=True)
    t0 = time.time()
    bars = engine_bars(args.jobs)  # --jobs 1: the engine's bar per epoch; several jobs: one bar over all their epochs
    epochs = {run_root / f"seed{s}": pretrain_cfg(s, args.quick, args.overrides).engine.epochs for s in seeds}
    with overall_progress(epochs, enabled=args.jobs > 1):
        done = run_jobs(run_job, [(s, (s, run_root / f"seed{s}", args.quick, resume, args.overrides + bars))
                                  for s in seeds],
                        workers=max(1, args.jobs))
    for s in seeds:
        cfg = pretrain_cfg(s, args.quick, args.overrides)
        path = out_dir / f"{ARMS[0]}_seed{s}.pth"
        info = save_encoder(teacher_backbone(run_root / f"seed{s}" / "last.pt"), path)
        last = done[s]["history"][-1]
        record_encoder(out_dir / "manifest.json", path.name, {
            "arm": ARMS[0], "seed": s, "file_layout": "flat DINO ViT backbone (dino_deitsmall8_pretrain.pth layout), "
            f"pos_embed stored for {cfg.model.global_size} px", "recipe": str(PRE_CFG.relative_to(ROOT)),
            "data": f"transfgu.pretrain.scene_pool(n={cfg.data.n_images}, seed={s}, size={cfg.data.size}) "
                    f"(textured_scenes draw {POOL_SEED_OFFSET + s})",
            "epochs": cfg.engine.epochs, "wall_seconds": round(done[s]["seconds"], 1), "git_sha": git_sha(),
            "command": f"make pretrain PAPER=transfgu SEEDS={s}"
                       + (f" ARGS='--set {' '.join(args.overrides)}'" if args.overrides else ""),
            "last_epoch": {k: round(v, 4) for k, v in last.items() if isinstance(v, float)}} | info)
        print(f"  wrote {path} ({info['bytes'] / 2 ** 20:.2f} MB, sha256 {info['sha256'][:12]}...)", flush=True)
    print(f"done in {time.time() - t0:.0f} s; manifest {out_dir / 'manifest.json'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
