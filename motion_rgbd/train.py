"""Train MotionRGBD: a unimodal net (``stage=unimodal``, ``data.modality=rgb|depth``) or CAPF (``stage=fusion``,
initialised from the two unimodal checkpoints).

    python -m motion_rgbd.train --config motion_rgbd/configs/motionrgbd_i3d-dsn_8xb6-100e_nvgesture-depth.yaml \\
        data.root=/data/NvGesture
    python -m motion_rgbd.train --config motion_rgbd/configs/capf_i3d-dsn_8xb6-100e_nvgesture.yaml \\
        data.root=/data/NvGesture model.rgb_checkpoint=runs/.../best.pt model.depth_checkpoint=runs/.../best.pt
    torchrun --nproc_per_node=8 -m motion_rgbd.train --config ...        # DDP (the paper: 8 GPUs)

The plain loops ``train_unimodal`` / ``train_capf`` (Adam, in-memory tensors) drive the embedded reproduction.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

from shared.cli import train_main
from shared.engine import RunConfig, Task, Trainer
from shared.engine.dist import eval_loader, gather_cat
from shared.metrics import top1_accuracy

from .data import RGBDVideoDataset, TrainAugment
from .depth import RawDepthOptions
from .losses import ce_ls, unimodal_loss
from .model import CrossFusionNet, MotionNet, load_official_checkpoint, read_checkpoint, unimodal_to_fusion
from .synthetic import SynAugment, SynRGBD


@dataclass
class ModelConfig:
    frames: int = 64
    bn_momentum: float = 0.01  # official Unit3D BatchNorm momentum
    width_div: int = 1  # 1: official I3D-Inception widths
    dim: int = 512
    samples: list[int] = field(default_factory=lambda: [16, 32, 48])
    depth: int = 6  # N
    heads: int = 8
    dim_head: int = 64
    mlp_dim: int = 768
    dropout: float = 0.1
    knn: float = 0.7
    recoupling: bool = True
    frp: bool = True
    coupled: bool = False  # ablation: every k x k trunk conv becomes 3 x k x k (I3D-style coupled), ours
    rcm_hidden: int = 256
    temper: float = 0.5  # 0.4 for NvGesture
    sharpness: bool = True
    temp: list[float] = field(default_factory=lambda: [0.04, 0.07])
    temp_warm_epochs: int = 30
    init_checkpoint: str = ""  # unimodal: pretrained (e.g. Jester / NTU) official checkpoint, heads skipped
    from_scratch: bool = False  # true where the paper trains without init_checkpoint (NTU); silences the warning
    rgb_checkpoint: str = ""  # fusion
    depth_checkpoint: str = ""
    official_view: bool = True  # fusion: the official un-permuted .view in the spatial interaction


@dataclass
class DataConfig:
    name: str = "nvgesture"  # nvgesture | isogd | thu_read | ntu (NTU RGB+D 60, verify name ntu_rgbd)
    root: str = ""
    train_list: str = "dataset_splits/train.txt"
    valid_list: str = "dataset_splits/valid.txt"
    modality: str = "rgb"  # rgb | depth (fusion: both)
    num_classes: int = 25
    size: int = 224
    window: int = 10  # FRP window w (NvGesture 4)
    eval_batch_size: int = 8
    # Official test geometry: resize to (w, h), centre crop `crop`, resize to `size`; [] resizes straight to size.
    resize: list[int] = field(default_factory=list)
    crop: int = 0
    crop_offset: list[int] = field(default_factory=list)  # test crop (left, top); [] = centre (NvGesture: 32, 32)
    # Official training augmentation (config/*.yml `dataset:`; motion_rgbd.data.TrainAugment): random crop of
    # `crop` after `resize`, rotation with probability rotate_p by an angle in [angle[0], angle[1]), flip.
    flip: float = 0.0  # NvGesture/IsoGD 0 (mirroring changes a gesture's class); NTU, THU-READ 0.5
    rotate_p: float = 0.5  # THU-READ 0.8
    angle: list[int] = field(default_factory=lambda: [-10, 10])  # THU-READ [-45, 45]
    train_offsets: list[int] = field(default_factory=list)  # [] = [0, W - crop); NvGesture [10, 32] (NvData)
    drop_short: int = 16  # official: videos with <= 16 frames are dropped from every list (0 keeps all)
    # Raw depth (NTU's 16-bit PNGs; motion_rgbd/depth.py). Official: wrap / error / bgr; the others are ours.
    raw_depth_scale: str = "wrap"  # wrap (np.uint8(255 * v), official) | range (ours: raw_depth_range_mm -> 0..255)
    raw_depth_range_mm: list[float] = field(default_factory=lambda: [500.0, 4500.0])
    raw_depth_empty: str = "error"  # error (official crashes; ours: one line) | centre (ours: crop the centre)
    raw_depth_jet_order: str = "bgr"  # bgr (official: OpenCV's BGR JET fed as RGB) | rgb (ours)


@dataclass
class MotionConfig(RunConfig):
    stage: str = "unimodal"  # unimodal | fusion
    label_smoothing: float = 0.1
    distill: float = 1.0
    distill_warm_epochs: int = 2  # distillation weight 0 for epochs 0..1 (official train.py)
    loss_weights: list[float] = field(default_factory=lambda: [1.0, 0.5, 0.5, 0.5])
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)


NET_KEYS = ("bn_momentum", "frames", "width_div", "dim", "samples", "depth", "heads", "dim_head", "mlp_dim",
            "dropout", "knn", "recoupling", "frp", "coupled", "rcm_hidden", "temper", "sharpness", "temp",
            "temp_warm_epochs")
# The embedded miniature (T = 16 frames of 32x32, widths / 8, D = 48, N = 2): the tests' net; the reported
# runs read theirs from configs/embedded-synrgbd.yaml (a test checks the two agree).
MINI_NET = dict(bn_momentum=0.1, frames=16, width_div=8, dim=48, samples=[4, 8, 12], depth=2, heads=4, dim_head=8,
                mlp_dim=64, dropout=0.1, knn=0.7, recoupling=True, frp=True, coupled=False, rcm_hidden=32, temper=0.5,
                sharpness=True, temp=[0.04, 0.07], temp_warm_epochs=4)


def net_kwargs(m: ModelConfig | dict, epochs: int) -> dict:
    d = asdict(m) if not isinstance(m, dict) else m
    kw = {k: d[k] for k in NET_KEYS}
    kw["samples"], kw["temp"] = tuple(kw["samples"]), tuple(kw["temp"])
    return kw | {"epochs": epochs}


def _set_epoch(model: nn.Module, epoch: int) -> None:
    for mod in model.modules():
        if hasattr(mod, "temp_schedule"):
            mod.epoch = epoch


# --------------------------------------------------------------------------- plain loops (embedded set)
def train_unimodal(data: SynRGBD, modality: str, epochs: int, seed: int, net: dict, lr: float = 1e-3,
                   batch: int = 16, distill_warm: int = 2, augment: SynAugment | None = None
                   ) -> tuple[MotionNet, list[float]]:
    """Adam, label smoothing 0.1, multi-loss [1, .5, .5, .5] + KL (0 for the first ``distill_warm`` epochs);
    ``augment``: one geometric draw per clip and step (the official NvGesture recipe, scaled)."""
    model = MotionNet(6, **net_kwargs(net, epochs))
    model.dtn.rng.seed(seed)
    x, g = (data.rgb, data.g_rgb) if modality == "rgb" else (data.depth, data.g_depth)
    opt = torch.optim.Adam(model.parameters(), lr)
    gen = torch.Generator().manual_seed(seed)
    curve = []
    for ep in range(epochs):
        model.train()
        _set_epoch(model, ep)
        tot, n = 0.0, 0
        for idx in torch.randperm(len(data.y), generator=gen).split(batch):
            xb, gb = augment.train(x[idx], g[idx], gen) if augment else (x[idx], g[idx])
            out, kl, _ = model(xb, gb)
            loss = unimodal_loss(out, kl, data.y[idx], distill=1.0 if ep >= distill_warm else 0.0)["loss"]
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            tot, n = tot + loss.item() * len(idx), n + len(idx)
        curve.append(tot / n)
    return model, curve


@torch.no_grad()
def evaluate_unimodal(model: MotionNet, data: SynRGBD, modality: str, batch: int = 64) -> torch.Tensor:
    """Logits z (max over branches), eval mode, middle frame of each DTN segment (deterministic)."""
    model.eval()
    x, g = (data.rgb, data.g_rgb) if modality == "rgb" else (data.depth, data.g_depth)
    return torch.cat([model(x[i:i + batch], g[i:i + batch])[0][0] for i in range(0, len(x), batch)])


def train_capf(data: SynRGBD, rgb_net: MotionNet, depth_net: MotionNet, epochs: int, seed: int, net: dict,
               lr: float = 1e-3, batch: int = 16, augment: SynAugment | None = None
               ) -> tuple[CrossFusionNet, list[float]]:
    """CAPF from the two unimodal nets (heads dropped), all weights trainable, the full CAPF loss; with
    ``augment`` the RGB and depth clips draw independently (official)."""
    model = CrossFusionNet(6, **net_kwargs(net, epochs))
    load_official_checkpoint(model, unimodal_to_fusion(rgb_net.state_dict(), depth_net.state_dict()),
                             required_prefix="Modalit_")
    model.Modalit_rgb.dtn.rng.seed(seed)
    model.Modalit_depth.dtn.rng.seed(seed + 1)
    opt = torch.optim.Adam(model.parameters(), lr)
    gen = torch.Generator().manual_seed(seed)
    curve = []
    for _ in range(epochs):
        model.train()
        tot, n = 0.0, 0
        for idx in torch.randperm(len(data.y), generator=gen).split(batch):
            xr, gr, xd, gd = data.rgb[idx], data.g_rgb[idx], data.depth[idx], data.g_depth[idx]
            if augment:
                (xr, gr), (xd, gd) = augment.train(xr, gr, gen), augment.train(xd, gd, gen)
            _, losses = model(xr, xd, gr, gd, data.y[idx])
            opt.zero_grad()
            losses["loss"].backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            tot, n = tot + losses["loss"].item() * len(idx), n + len(idx)
        curve.append(tot / n)
    return model, curve


@torch.no_grad()
def evaluate_capf(model: CrossFusionNet, data: SynRGBD, batch: int = 64):
    """(y, r, d) logits over the set, eval mode."""
    model.eval()
    outs = [model(data.rgb[i:i + batch], data.depth[i:i + batch], data.g_rgb[i:i + batch],
                  data.g_depth[i:i + batch])[0] for i in range(0, len(data.y), batch)]
    return tuple(torch.cat(o) for o in zip(*outs))


# --------------------------------------------------------------------------- engine task (real data)
class MotionTask(Task):
    """Unimodal or fusion training on an official folder layout through shared.engine."""

    evaluate_sharded = True  # under DDP every rank evaluates its shard of the validation set (issue 24)

    def __init__(self, cfg: MotionConfig):
        self.cfg = cfg

    def _dataset(self, train: bool):
        d, root = self.cfg.data, Path(self.cfg.data.root)
        lst = root / (d.train_list if train else d.valid_list)
        mod = "rgbd" if self.cfg.stage == "fusion" else d.modality
        return RGBDVideoDataset(root, lst, d.name, mod, self.cfg.model.frames, d.size, d.window, train,
                                tuple(d.resize) or None, d.crop, d.drop_short, raw_depth_options(d),
                                tuple(d.crop_offset) or None, TrainAugment(d.flip, d.rotate_p, tuple(d.angle),
                                                                            tuple(d.train_offsets) or None))

    def build_model(self) -> nn.Module:
        c, kw = self.cfg, net_kwargs(self.cfg.model, self.cfg.engine.epochs)
        if c.stage == "fusion":
            model = CrossFusionNet(c.data.num_classes, official_view=c.model.official_view,
                                   label_smoothing=c.label_smoothing, **kw)
            if c.model.rgb_checkpoint and c.model.depth_checkpoint:
                load_official_checkpoint(model, unimodal_to_fusion(read_checkpoint(c.model.rgb_checkpoint),
                                                                   read_checkpoint(c.model.depth_checkpoint)),
                                         required_prefix="Modalit_")
            return model
        model = MotionNet(c.data.num_classes, **kw)
        if c.model.init_checkpoint:
            load_official_checkpoint(model, c.model.init_checkpoint, skip_heads=True)
        return model

    def train_dataset(self, epoch: int):
        return self._dataset(True)

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        _set_epoch(trainer.model, epoch)

    def training_step(self, model, batch, trainer: Trainer) -> dict[str, torch.Tensor]:
        x, g, y = batch
        if self.cfg.stage == "fusion":
            return model(x[0], x[1], g[0], g[1], y)[1]
        out, kl, _ = model(x, g)
        lam = self.cfg.distill if trainer.epoch >= self.cfg.distill_warm_epochs else 0.0
        return unimodal_loss(out, kl, y, self.cfg.loss_weights, lam, self.cfg.label_smoothing)

    @torch.no_grad()
    def evaluate(self, model, trainer: Trainer) -> dict[str, float]:
        """Every validation video once, in order, fixed head (z; fusion y + r + d), middle DTN frames."""
        model.eval()
        logits, ys = [], []
        # under DDP every rank takes its shard (evaluate_sharded), the logits are gathered in order
        for x, g, y in eval_loader(self._dataset(False), self.cfg.data.eval_batch_size, self.cfg.engine.num_workers):
            dev = trainer.device
            if self.cfg.stage == "fusion":
                (a, b, c), _ = model(x[0].to(dev), x[1].to(dev), g[0].to(dev), g[1].to(dev))
                logits.append((a + b + c).cpu())
            else:
                logits.append(model(x.to(dev), g.to(dev))[0][0].cpu())
            ys.append(y)
        lg, yy = gather_cat(torch.cat(logits)), gather_cat(torch.cat(ys))
        return {"acc": top1_accuracy(lg, yy), "loss": float(ce_ls(lg, yy, 0.0))}


def raw_depth_options(d: DataConfig) -> RawDepthOptions:
    return RawDepthOptions(d.raw_depth_scale, tuple(d.raw_depth_range_mm), d.raw_depth_empty, d.raw_depth_jet_order)


def build_task(cfg: MotionConfig) -> MotionTask:
    return MotionTask(cfg)


def tensor_dataset(data: SynRGBD, modality: str) -> TensorDataset:
    x, g = (data.rgb, data.g_rgb) if modality == "rgb" else (data.depth, data.g_depth)
    return TensorDataset(x, g, data.y)


def main(argv=None):
    return train_main("python -m motion_rgbd.train", __doc__, MotionConfig, lambda cfg, run_dir: build_task(cfg),
                      argv)


if __name__ == "__main__":
    main()
