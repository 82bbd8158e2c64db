"""``make pretrain PAPER=cdtrans``: the shipped ImageNet stand-in that every embedded CDTrans row starts from.

The paper starts Stage A from an ImageNet-pretrained DeiT, a file users download. The embedded stand-in is the
Stage-A tiny ViT (8x8 input, 2x2 patches, D 64, 4 blocks) trained *with labels* on a generic image set that is
neither domain: :func:`shape_images`, 12 classes of line drawings (bars, rings, crosses, corners, ...), drawn
at 32x32, distorted and area-reduced to 8x8 with the same quantisation as the digit domains. No digit is seen.

Each run writes ``supervised_shapes_seed<k>.pth`` as a timm classifier file (flat ``VisionTransformer`` keys
plus ``head.*``), the layout of a DeiT release, and ``make reproduce`` reads it through
``model.imagenet_init`` (:func:`cdtrans.model.load_imagenet_init`: ``head`` skipped, every backbone key
required) exactly as a real DeiT file. The recipe is ``configs/supervised_vit-tiny-d64_1xb64-20e_shapes.yaml``;
``cdtrans/encoders/manifest.json`` records each file's recipe, data, seed, wall time, git SHA, sha256 and every
development attempt. Runs live in ``runs/pretrain/cdtrans/seed<k>`` and resume with ``--resume auto``.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shared.backbones import create_vit
from shared.config import load_config
from shared.data.digits import _random_affine
from shared.engine import Task, Trainer
from shared.jobs import run_jobs
from shared.metrics import top1_accuracy
from shared.pretrain import engine_bars, git_sha, overall_progress, pretrain_parser, record_encoder, save_encoder

from .data import ArrayDataset
from .train import CDTransConfig

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SUP_CFG = HERE / "configs" / "supervised_vit-tiny-d64_1xb64-20e_shapes.yaml"
ENCODERS = HERE / "encoders"
ARM = "supervised_shapes"
SHAPES = ("hbar", "vbar", "slash", "backslash", "ring", "square", "triangle", "plus", "cross", "corner",
          "tee", "arc")
QUICK = ["data.n_source=128", "engine.epochs=1", "engine.batch_size=32", "sched.warmup_epochs=0"]


def _draw(kind: str, rng: np.random.Generator, canvas: int = 32) -> np.ndarray:
    """One white-on-black primitive on a ``canvas`` square, float32 in [0, 1]; size, place, stroke random."""
    a = np.zeros((canvas, canvas), np.float32)
    c = canvas / 2 + rng.uniform(-3, 3, size=2)
    r = rng.uniform(0.28, 0.42) * canvas
    t = int(rng.integers(2, 5))
    p = lambda dx, dy: (int(round(c[0] + dx * r)), int(round(c[1] + dy * r)))  # noqa: E731
    line = lambda u, v: cv2.line(a, p(*u), p(*v), 1.0, t)  # noqa: E731
    if kind == "hbar":
        line((-1, 0), (1, 0))
    elif kind == "vbar":
        line((0, -1), (0, 1))
    elif kind == "slash":
        line((-0.8, 1), (0.8, -1))
    elif kind == "backslash":
        line((-0.8, -1), (0.8, 1))
    elif kind == "ring":
        cv2.ellipse(a, p(0, 0), (int(r), int(r * rng.uniform(0.7, 1.0))), 0, 0, 360, 1.0, t)
    elif kind == "square":
        cv2.rectangle(a, p(-0.8, -0.8), p(0.8, 0.8), 1.0, t)
    elif kind == "triangle":
        cv2.polylines(a, [np.array([p(0, -1), p(1, 0.8), p(-1, 0.8)], np.int32)], True, 1.0, t)
    elif kind == "plus":
        line((-1, 0), (1, 0)), line((0, -1), (0, 1))
    elif kind == "cross":
        line((-0.8, -0.8), (0.8, 0.8)), line((-0.8, 0.8), (0.8, -0.8))
    elif kind == "corner":  # an L in one of four orientations
        sx, sy = rng.choice([-1, 1], size=2)
        line((sx * 0.8, -sy), (sx * 0.8, sy)), line((sx * 0.8, sy), (-sx * 0.8, sy))
    elif kind == "tee":
        line((-1, -0.9), (1, -0.9)), line((0, -0.9), (0, 1))
    elif kind == "arc":  # a half ring opening to a random side
        start = float(rng.choice([0, 90, 180, 270]))
        cv2.ellipse(a, p(0, 0), (int(r), int(r)), start, 0, 180, 1.0, t)
    else:
        raise ValueError(f"unknown shape {kind!r}")
    return a


def shape_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The generic labelled set: ``n`` images ``(n, 1, 8, 8)`` float32 (standardised) and labels ``(n,)``.

    Each of the 12 :data:`SHAPES` is drawn at 32x32 with a random stroke (2-4 px), size and place, then the
    digit source's distortion (rotation 15 deg, scale 0.8-1.2, shear 0.15, blur) and its reduction: area-resize
    to 8x8 and quantise to 0..16 as scikit-learn's 4x4-block counts. Deterministic in ``seed``.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(SHAPES), size=n)
    small = np.empty((n, 8, 8), np.float32)
    for i, k in enumerate(labels):
        a = _random_affine(_draw(SHAPES[k], rng), rng, rot=15, scale=(0.8, 1.2), shift=2, shear=0.15)
        if rng.random() < 0.7:
            a = cv2.GaussianBlur(a, (3, 3), rng.uniform(0.3, 1.0))
        small[i] = cv2.resize(np.clip(a, 0, 1), (8, 8), interpolation=cv2.INTER_AREA)
    small = np.round(small / max(float(small.max()), 1e-6) * 16.0 * 1.15).clip(0, 16)
    x = (small - small.mean()) / small.std()
    return x[:, None].astype(np.float32), labels.astype(np.int64)


def vit_kwargs(cfg: CDTransConfig) -> dict:
    """The timm keyword arguments of the Stage-A backbone (so the file loads into ``CDTransModel.base``)."""
    m = cfg.model
    extra = {k: getattr(m, k) for k in ("embed_dim", "depth", "num_heads", "mlp_ratio") if getattr(m, k)}
    return dict(img_size=m.img_size, patch_size=m.patch_size, in_chans=m.in_chans, **extra)


class ShapeSupervisedTask(Task):
    """Cross-entropy (label smoothing as Stage A) on :func:`shape_images`; held-out accuracy as evaluation."""

    def __init__(self, cfg: CDTransConfig, seed: int):
        self.cfg = cfg
        x, y = shape_images(cfg.data.n_source, 10_000 + seed)
        self.train = ArrayDataset(x, y, cfg.data.shift)
        self.held_out = shape_images(max(256, cfg.data.n_source // 5), 20_000 + seed)

    def build_model(self) -> nn.Module:
        m = self.cfg.model
        return create_vit(m.arch, num_classes=len(SHAPES), global_pool="token", drop_path_rate=m.drop_path_rate,
                          **vit_kwargs(self.cfg))

    def train_dataset(self, epoch: int):
        return self.train

    def training_step(self, model, batch, trainer):
        x, y, _ = batch
        return {"loss": F.cross_entropy(model(x), y, label_smoothing=self.cfg.label_smoothing)}

    @torch.no_grad()
    def evaluate(self, model, trainer) -> dict[str, float]:
        was = model.training
        model.eval()
        logits = model(torch.from_numpy(self.held_out[0]).to(trainer.device)).cpu()
        model.train(was)
        return {"acc": top1_accuracy(logits, torch.from_numpy(self.held_out[1]))}


def sup_cfg(seed: int, quick: bool, overrides: list[str] = ()) -> CDTransConfig:
    return load_config(SUP_CFG, CDTransConfig, ["logger.progress=false", f"engine.seed={seed}"]
                       + (QUICK if quick else []) + list(overrides))


def run_job(seed: int, run: Path, quick: bool, resume: bool, overrides: list[str]) -> dict:
    """One pre-training run (single thread: ``--jobs`` processes share the cores)."""
    torch.set_num_threads(1)
    t0 = time.time()
    cfg = sup_cfg(seed, quick, overrides)
    if not resume:
        shutil.rmtree(run, ignore_errors=True)
    Trainer(ShapeSupervisedTask(cfg, seed), cfg, run,
            resume="auto" if resume and (run / "last.pt").is_file() else None).fit()
    history = torch.load(run / "last.pt", map_location="cpu", weights_only=True)["history"]
    out = {"seed": seed, "history": history, "seconds": time.time() - t0}
    print(f"  seed {seed} {ARM}: held-out shape acc {history[-1].get('acc', float('nan')):.2f} "
          f"({out['seconds']:.0f} s)", flush=True)
    return out


def export(seed: int, res: dict, run: Path, out_dir: Path, quick: bool, command: str,
           overrides: list[str]) -> dict:
    """Write ``supervised_shapes_seed<k>.pth`` (timm classifier layout) and its manifest entry."""
    sd = torch.load(run / "last.pt", map_location="cpu", weights_only=True)["model"]
    path = out_dir / f"{ARM}_seed{seed}.pth"
    info = save_encoder(sd, path)
    cfg = sup_cfg(seed, quick, overrides)
    last = res["history"][-1]
    entry = {"arm": ARM, "seed": seed, "file_layout": "timm VisionTransformer state_dict (flat keys + head.*), "
             "as a DeiT release", "recipe": str(SUP_CFG.relative_to(ROOT)),
             "data": f"cdtrans.pretrain.shape_images(n={cfg.data.n_source}, seed={10_000 + seed}), "
                     f"{len(SHAPES)} classes",
             "epochs": int(last["epoch"]) if "epoch" in last else None,
             "wall_seconds": round(res["seconds"], 1), "git_sha": git_sha(), "command": command,
             "last_epoch": {k: round(v, 4) for k, v in last.items() if isinstance(v, float)},
             "held_out_shape_acc": round(float(last.get("acc", float("nan"))), 2)} | info
    record_encoder(out_dir / "manifest.json", path.name, entry)
    print(f"  wrote {path} ({info['bytes'] / 2 ** 20:.2f} MB, sha256 {info['sha256'][:12]}...)", flush=True)
    return entry


def main(argv: list[str] | None = None) -> int:
    args = pretrain_parser("cdtrans", [ARM], __doc__.split("\n")[0]).parse_args(argv)
    from shared.cli import parse_seeds

    seeds = parse_seeds(args.seeds)
    bad = [a for a in args.arms.split(",") if a.strip() and a.strip() != ARM]
    if bad:
        raise SystemExit(f"--arms: unknown {', '.join(bad)} (cdtrans ships one arm: {ARM})")
    out_dir = Path(args.out) if args.out else ENCODERS
    run_root = Path(args.run_root) if args.run_root else ROOT / "runs" / "pretrain" / "cdtrans"
    resume = args.resume != "none"
    print(f"cdtrans pre-training: {ARM}, seeds {seeds} -> {out_dir} (runs in {run_root})", flush=True)
    t0 = time.time()
    bars = engine_bars(args.jobs)  # --jobs 1: the engine's bar per epoch; several jobs: one bar over all their epochs
    epochs = {run_root / f"seed{s}": sup_cfg(s, args.quick, args.overrides).engine.epochs for s in seeds}
    with overall_progress(epochs, enabled=args.jobs > 1):
        done = run_jobs(run_job, [(s, (s, run_root / f"seed{s}", args.quick, resume, args.overrides + bars))
                                  for s in seeds], workers=max(1, args.jobs))
    for s in seeds:
        cmd = f"make pretrain PAPER=cdtrans SEEDS={s}" + (f" ARGS='--set {' '.join(args.overrides)}'"
                                                         if args.overrides else "")
        export(s, done[s], run_root / f"seed{s}", out_dir, args.quick, cmd, args.overrides)
    print(f"done in {time.time() - t0:.0f} s; manifest {out_dir / 'manifest.json'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
