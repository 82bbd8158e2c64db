"""Train MHFormer (or the single-hypothesis / per-frame baselines) on Human3.6M, MPI-INF-3DHP or the
embedded skeleton motion, with the official recipe: Adam (amsgrad) lr 1e-3 decayed after every epoch by
0.95, or by 0.5 after every 5th; 19 epochs; flip augmentation; MPJPE over all N frames.

    python -m mhformer.train --config mhformer/configs/mhformer_81f_1xb256-19e_h36m-cpn.yaml data.root=/data/h36m
    torchrun --nproc_per_node=4 -m mhformer.train --config ...      # multi-GPU (engine.batch_size is global)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from shared.cli import train_main
from shared.engine import EngineConfig, OptimConfig, RunConfig, SchedConfig, Task

from .data import H36M_TEST, H36M_TRAIN, PoseData, PoseWindows, load_3dhp, load_h36m
from .losses import mpjpe_loss, zero_root
from .model import build_model, load_official_checkpoint
from .scoring import evaluate_windows


@dataclass
class ModelConfig:
    arch: str = "mhformer"  # mhformer | single_hypothesis | per_frame_mlp | videopose3d
    frames: int = 27  # N, a multiple of 9 (per_frame_mlp: 1)
    channel: int = 512  # C (per_frame_mlp: hidden width)
    d_hid: int = 1024
    layers: int = 3  # 2 SHR + 1 CHI
    n_joints: int = 17
    out_joints: int = 17
    drop_rate: float = 0.1
    drop_path_rate: float = 0.2
    fused_attention: bool = True  # SDPA; false: explicit softmax (same numbers)
    checkpoint: str = ""  # official model_XXXX.pth to start from (loaded strictly)


@dataclass
class DataConfig:
    benchmark: str = "h36m"  # h36m | 3dhp
    root: str = "data/h36m"
    dataset: str = "h36m"  # file names data_3d_<dataset>.npz, data_2d_<dataset>_<keypoints>.npz
    keypoints: str = "cpn_ft_h36m_dbb"  # or gt
    train_subjects: list[str] = field(default_factory=lambda: list(H36M_TRAIN))
    test_subjects: list[str] = field(default_factory=lambda: list(H36M_TEST))
    actions: str = "*"
    downsample: int = 1  # official: 1 for the released models
    train_stride: int = 1  # every k-th frame as a window centre (1 = official; >1 only for the embedded runs)
    test_stride: int = 1
    flip_augment: bool = True
    flip_test: bool = True
    eval_batch_size: int = 0  # 0: engine.batch_size


@dataclass
class DecayConfig:
    """Official per-epoch decay: after epoch e (1-based) lr *= large if e % every == 0 else small. Applied only
    with ``sched.name: const`` (the official configs); another ``sched.name`` replaces it."""

    small: float = 0.95
    large: float = 0.5
    every: int = 5


@dataclass
class MHFormerConfig(RunConfig):
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    decay: DecayConfig = field(default_factory=DecayConfig)
    engine: EngineConfig = field(default_factory=lambda: EngineConfig(
        epochs=19, batch_size=256, drop_last=False, monitor="mpjpe", monitor_mode="min", seed=1, log_every=50))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(name="adam", lr=1e-3, weight_decay=0.0,
                                                                   amsgrad=True))
    sched: SchedConfig = field(default_factory=lambda: SchedConfig(name="const"))


def official_lr(base_lr: float, epoch: int, decay: DecayConfig) -> float:
    """Learning rate of 0-based ``epoch``: the product of the decays applied after epochs 1..epoch."""
    lr = base_lr
    for e in range(1, epoch + 1):
        lr *= decay.large if e % decay.every == 0 else decay.small
    return lr


class MHFormerTask(Task):
    def __init__(self, cfg: MHFormerConfig):
        self.cfg = cfg
        self._train: PoseData | None = None
        self._test: PoseWindows | None = None

    # ---------------------------------------------------------------- data
    def _load(self, train: bool) -> PoseData:
        d = self.cfg.data
        if d.benchmark == "3dhp":
            return load_3dhp(d.root, train)
        if d.benchmark != "h36m":
            raise ValueError(f"data.benchmark: unknown '{d.benchmark}' (h36m | 3dhp)")
        subjects = d.train_subjects if train else d.test_subjects
        return load_h36m(d.root, subjects, d.dataset, d.keypoints, d.actions, d.downsample)

    def train_dataset(self, epoch: int) -> PoseWindows:
        if self._train is None:
            self._train = self._load(True)
        return PoseWindows(self._train, self.cfg.model.frames, self.cfg.data.train_stride,
                           flip=self.cfg.data.flip_augment, out_all=True)

    def test_windows(self) -> PoseWindows:
        if self._test is None:
            self._test = PoseWindows(self._load(False), self.cfg.model.frames, self.cfg.data.test_stride,
                                     flip=False, out_all=False, valid_only=self.cfg.data.benchmark == "3dhp")
        return self._test

    # ---------------------------------------------------------------- model
    def build_model(self) -> nn.Module:
        m = self.cfg.model
        kwargs = dict(frames=m.frames, channel=m.channel, d_hid=m.d_hid, layers=m.layers, n_joints=m.n_joints,
                      out_joints=m.out_joints, drop_rate=m.drop_rate, drop_path_rate=m.drop_path_rate,
                      fused_attention=m.fused_attention)
        model = build_model(m.arch, **kwargs)
        if m.checkpoint:
            load_official_checkpoint(model, m.checkpoint)
        return model

    # ---------------------------------------------------------------- loop hooks
    def on_epoch_start(self, trainer, epoch: int) -> None:
        """The official per-epoch decay (``decay.*``) when ``sched.name`` is ``const``; any other ``sched.name``
        (the embedded miniature's per-update cosine to 0) is the engine's scheduler, and ``decay.*`` is unused."""
        if self.cfg.sched.name.lower() not in ("const", "none"):
            return
        lr = official_lr(self.cfg.optim.lr, epoch, self.cfg.decay)
        for g in trainer.optimizer.param_groups:
            g["lr"] = lr * g.get("lr_factor", 1.0)

    def training_step(self, model: nn.Module, batch, trainer) -> dict[str, torch.Tensor]:
        x, y, _ = batch
        root = self._train.root if self._train is not None else 0
        out = model(x)
        if out.shape[1] != y.shape[1]:  # a single-frame output (VideoPose3D): supervise the centre frame
            c = y.shape[1] // 2
            y = y[:, c - out.shape[1] // 2:c - out.shape[1] // 2 + out.shape[1]]
        return {"loss": mpjpe_loss(out, zero_root(y, root))}

    def evaluate(self, model: nn.Module, trainer) -> dict[str, float]:
        d = self.cfg.data
        metrics = evaluate_windows(model, self.test_windows(), d.benchmark,
                                   d.eval_batch_size or self.cfg.engine.batch_size, d.flip_test, trainer.device)
        metrics.pop("per_action", None)
        return metrics


def main(argv: list[str] | None = None) -> dict:
    return train_main("python -m mhformer.train", __doc__, MHFormerConfig, lambda cfg, run_dir: MHFormerTask(cfg),
                      argv)


if __name__ == "__main__":
    main()
