"""ELSA-Swin + a plain-PyTorch UperNet on ADE20K: the paper's segmentation row without mmseg.

    python -m elsa.segmentation --config elsa/configs/upernet_elsa-swin-tiny_8xb2-160k_ade20k.yaml \\
        data.root=/data/ADEChallengeData2016 model.init_checkpoint=/weights/elsa_swin_tiny.pth
    GPUS=8 DATA_ROOT=/data/ADEChallengeData2016 WEIGHTS=/weights/elsa_swin_tiny.pth TASK=ade20k \\
        bash elsa/scripts/dense.sh

:class:`UPerHead` follows mmseg's ``UPerHead`` (which the official ``seg/`` fork uses unchanged): a PPM on
the last map (adaptive average pools 1, 2, 3, 6 -> 1x1 conv-BN-ReLU -> upsampled, concatenated with the map
-> 3x3 bottleneck), 1x1 lateral convs on the other maps, top-down addition, 3x3 FPN convs, all levels
upsampled to stride 4 and concatenated -> 3x3 conv -> dropout 0.1 -> 1x1 classifier; bilinear,
``align_corners=False``. :class:`FCNHead` is mmseg's auxiliary head on stage 2 (one 3x3 conv, loss weight 0.4).
The backbone is ``elsa.detection.elsa_backbone`` (features_only + the per-output LayerNorm of mmseg's Swin).

Recipe (mmseg Swin/ELSA ``upernet_*_512x512_160k_ade20k``): AdamW 6e-5, weight decay 0.01 (none on norms and
position tables), poly lr (power 1) to 0 over 160k iterations, 1,500 warm-up iterations, batch 16, crop 512 x
512 from a random 0.5-2.0 rescale of (2048, 512), flip, ignore label 255 (``reduce_zero_label``: ADE's class 0
"other" is ignored, classes 1..150 -> 0..149). The heads' BatchNorms are mmseg's ``SyncBN`` (statistics over
all 16 images of a step) when training on several GPUs (NCCL), plain BatchNorm otherwise (``model.sync_bn``).
Differences: mmseg's photometric distortion is replaced by torchvision's ColorJitter; the engine counts
epochs, so 160k iterations at batch 16 on 20,210 images are written as 127 epochs (160,401 iterations) with
the engine's poly schedule per iteration (``sched.name: poly``, ``per_iter: true``, ``warmup_updates: 1500``:
mmcv's form). Evaluation: single-scale mIoU on the 2,000 validation images at their (2048, 512)-rescaled size;
the paper's 47.9 (ELSA-Swin-T) is multi-scale + flip (``ms_flip: true``: scales 0.5..1.75 and flips, logits
averaged).

Data::

    ROOT/images/{training,validation}/*.jpg     ROOT/annotations/{training,validation}/*.png
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from shared.cli import train_main
from shared.engine import RunConfig, Task, Trainer

from .detection import LayerNorm2d, elsa_backbone


def conv_bn_relu(cin: int, cout: int, k: int) -> nn.Sequential:
    """mmseg ``ConvModule`` (conv without bias, BN, ReLU)."""
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))


def _up(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class UPerHead(nn.Module):
    """UperNet decode head (mmseg ``UPerHead``): maps [(B, C_i, H/s_i, W/s_i)] -> logits (B, K, H/4, W/4)."""

    def __init__(self, in_channels: list[int], num_classes: int, channels: int = 512,
                 pool_scales: tuple[int, ...] = (1, 2, 3, 6), dropout: float = 0.1):
        super().__init__()
        self.pool_scales = pool_scales
        self.ppm = nn.ModuleList([conv_bn_relu(in_channels[-1], channels, 1) for _ in pool_scales])
        self.bottleneck = conv_bn_relu(in_channels[-1] + len(pool_scales) * channels, channels, 3)
        self.lateral_convs = nn.ModuleList([conv_bn_relu(c, channels, 1) for c in in_channels[:-1]])
        self.fpn_convs = nn.ModuleList([conv_bn_relu(channels, channels, 3) for _ in in_channels[:-1]])
        self.fpn_bottleneck = conv_bn_relu(len(in_channels) * channels, channels, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def psp_forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [x] + [_up(m(F.adaptive_avg_pool2d(x, s)), x.shape[2:]) for s, m in zip(self.pool_scales, self.ppm)]
        return self.bottleneck(torch.cat(outs, 1))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        lat = [conv(f) for conv, f in zip(self.lateral_convs, feats[:-1])] + [self.psp_forward(feats[-1])]
        for i in range(len(lat) - 1, 0, -1):  # top-down
            lat[i - 1] = lat[i - 1] + _up(lat[i], lat[i - 1].shape[2:])
        outs = [conv(x) for conv, x in zip(self.fpn_convs, lat[:-1])] + [lat[-1]]
        outs = [outs[0]] + [_up(o, outs[0].shape[2:]) for o in outs[1:]]
        return self.conv_seg(self.dropout(self.fpn_bottleneck(torch.cat(outs, 1))))


class FCNHead(nn.Module):
    """mmseg ``FCNHead`` with one conv, no concat_input (the UperNet configs' auxiliary head)."""

    def __init__(self, in_channels: int, num_classes: int, channels: int = 256, dropout: float = 0.1):
        super().__init__()
        self.convs = conv_bn_relu(in_channels, channels, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_seg(self.dropout(self.convs(x)))


class UperNet(nn.Module):
    """Backbone (``features_only``, per-output LayerNorm) + UPerHead (+ FCN auxiliary head on ``aux_index``).

    forward(x (B, 3, H, W)) -> logits (B, K, H, W) in eval; (logits, aux logits) at full size in training.
    """

    def __init__(self, body: nn.Module, num_classes: int, channels: int = 512, aux_channels: int = 256,
                 aux_index: int = 2):
        super().__init__()
        self.body = body
        chs = body.feature_info.channels()
        self.norms = nn.ModuleList([LayerNorm2d(c) for c in chs])
        self.decode_head = UPerHead(chs, num_classes, channels)
        self.aux_index = aux_index
        self.auxiliary_head = FCNHead(chs[aux_index], num_classes, aux_channels) if aux_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        feats = [n(f) for n, f in zip(self.norms, self.body(x))]
        out = _up(self.decode_head(feats), x.shape[2:])
        if self.training and self.auxiliary_head is not None:
            return out, _up(self.auxiliary_head(feats[self.aux_index]), x.shape[2:])
        return out


def elsa_upernet(num_classes: int = 150, backbone: str = "elsa_swin_tiny", init_checkpoint: str = "",
                 channels: int = 512, aux_channels: int = 256, **backbone_kwargs: Any) -> UperNet:
    return UperNet(elsa_backbone(backbone, init_checkpoint, **backbone_kwargs), num_classes, channels, aux_channels)


# ----------------------------------------------------------------------------------------------- data
ADE_SPLITS = {"train": "training", "val": "validation"}


class ADE20K(Dataset):
    """ADEChallengeData2016 pairs; labels with ``reduce_zero_label`` (0 -> 255 ignored, c -> c - 1).

    train: rescale (2048, 512) x U(0.5, 2.0) keeping the ratio, random 512 crop (padded with 0 / 255), flip,
    colour jitter. val: rescale to fit (2048, 512). Images ImageNet-normalised, (3, H, W) float; labels (H, W) long.
    """

    MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    def __init__(self, root: str | Path, split: str, crop: int = 512, scale: tuple[int, int] = (2048, 512)):
        root = Path(root)
        img_dir, ann_dir = root / "images" / ADE_SPLITS[split], root / "annotations" / ADE_SPLITS[split]
        for d in (img_dir, ann_dir):
            if not d.is_dir():
                raise FileNotFoundError(f"{d}: folder missing (expected ROOT/images|annotations/{ADE_SPLITS[split]})")
        self.images = sorted(img_dir.glob("*.jpg"))
        if not self.images:
            raise FileNotFoundError(f"{img_dir}: no .jpg images")
        self.labels = [ann_dir / (p.stem + ".png") for p in self.images]
        missing = [str(p) for p in self.labels if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"{missing[0]}: annotation missing ({len(missing)} in all)")
        self.train, self.crop, self.scale = split == "train", crop, scale

    def __len__(self) -> int:
        return len(self.images)

    def _resize(self, img, lab, ratio: float):
        from PIL import Image

        long_s, short_s = max(self.scale) * ratio, min(self.scale) * ratio
        w, h = img.size
        f = min(long_s / max(w, h), short_s / min(w, h))
        size = (max(1, int(w * f + 0.5)), max(1, int(h * f + 0.5)))
        return img.resize(size, Image.BILINEAR), lab.resize(size, Image.NEAREST)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image
        from torchvision.transforms import v2

        img = Image.open(self.images[i]).convert("RGB")
        lab = Image.open(self.labels[i])
        img, lab = self._resize(img, lab, float(torch.empty(()).uniform_(0.5, 2.0)) if self.train else 1.0)
        x = v2.functional.to_dtype(v2.functional.to_image(img), torch.float32, scale=True)
        y = torch.from_numpy(np.array(lab, dtype=np.int64))
        y = torch.where(y == 0, 255, y - 1)  # reduce_zero_label
        if self.train:
            x = v2.ColorJitter(0.125, 0.5, 0.5, 0.05)(x)  # stands in for mmseg's PhotoMetricDistortion
            ph, pw = max(0, self.crop - x.shape[1]), max(0, self.crop - x.shape[2])
            x, y = F.pad(x, (0, pw, 0, ph)), F.pad(y, (0, pw, 0, ph), value=255)
            # torch's RNG: the engine seeds it per run and per loader worker
            top = int(torch.randint(0, x.shape[1] - self.crop + 1, ()))
            left = int(torch.randint(0, x.shape[2] - self.crop + 1, ()))
            x, y = x[:, top:top + self.crop, left:left + self.crop], y[top:top + self.crop, left:left + self.crop]
            if float(torch.rand(())) < 0.5:
                x, y = x.flip(-1), y.flip(-1)
        x = v2.functional.normalize(x, list(self.MEAN), list(self.STD))
        return x, y


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, ms_flip: bool = False,
            scales: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)) -> torch.Tensor:
    """Class scores (1, K, H, W) of one image (1, 3, H, W); sizes padded to multiples of 32 and cropped back.
    ``ms_flip``: softmax scores averaged over ``scales`` and horizontal flips (mmseg's aug test)."""
    h, w = x.shape[2:]
    total = 0
    for s in (scales if ms_flip else (1.0,)):
        xs = _up(x, (int(h * s + 0.5), int(w * s + 0.5))) if s != 1.0 else x
        for flip in ((False, True) if ms_flip else (False,)):
            xi = xs.flip(-1) if flip else xs
            hp, wp = -(-xi.shape[2] // 32) * 32, -(-xi.shape[3] // 32) * 32
            out = model(F.pad(xi, (0, wp - xi.shape[3], 0, hp - xi.shape[2])))[..., :xi.shape[2], :xi.shape[3]]
            out = out.flip(-1) if flip else out
            total = total + _up(out, (h, w)).softmax(1)
    return total


@torch.no_grad()
def evaluate_miou(model: nn.Module, dataset: Dataset, num_classes: int, device: torch.device,
                  ms_flip: bool = False, max_images: int = 0) -> dict[str, float]:
    """mIoU / aAcc / mAcc (%) over the whole set (mmseg's protocol: one confusion, ignore 255)."""
    from shared.metrics.segmentation import confusion_matrix

    hist = np.zeros((num_classes, num_classes), np.int64)
    n = len(dataset) if max_images <= 0 else min(max_images, len(dataset))
    for x, y in DataLoader(torch.utils.data.Subset(dataset, range(n)), batch_size=1):
        pred = predict(model, x.to(device), ms_flip).argmax(1).cpu()
        hist += confusion_matrix(pred, y, num_classes, num_classes)
    tp = np.diag(hist).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / (hist.sum(0) + hist.sum(1) - tp)
        acc = tp / hist.sum(0)
    return {"mIoU": float(np.nanmean(iou) * 100), "aAcc": float(tp.sum() / max(hist.sum(), 1) * 100),
            "mAcc": float(np.nanmean(acc) * 100)}


# ----------------------------------------------------------------------------------------------- task
@dataclass
class SegModelConfig:
    backbone: str = "elsa_swin_tiny"
    drop_path_rate: float = 0.3
    init_checkpoint: str = ""
    num_classes: int = 150
    channels: int = 512
    aux_channels: int = 256
    aux_weight: float = 0.4
    sync_bn: bool = True  # mmseg's norm_cfg SyncBN: heads' BatchNorm statistics over all ranks (NCCL only)


@dataclass
class SegDataConfig:
    root: str = ""
    crop: int = 512
    ms_flip: bool = False
    eval_max_images: int = 0


@dataclass
class SegConfig(RunConfig):
    model: SegModelConfig = field(default_factory=SegModelConfig)
    data: SegDataConfig = field(default_factory=SegDataConfig)


class SegmentationTask(Task):
    """UperNet training: cross-entropy (ignore 255) on the decode head + ``aux_weight`` x on the FCN head."""

    def __init__(self, cfg: SegConfig):
        self.cfg = cfg
        if not cfg.data.root:
            raise ValueError("data.root: set it to the ADEChallengeData2016 folder")
        world, backend = _dist_world()
        self.sync_bn = cfg.model.sync_bn and world > 1 and backend == "nccl"
        bn_images = cfg.engine.batch_size // (1 if self.sync_bn else world)
        if bn_images < 2:  # the PPM's 1x1 pooled map: one value per channel and image
            raise ValueError(f"engine.batch_size={cfg.engine.batch_size}: UperNet's BatchNorms need at least 2 "
                             f"images per {'step' if self.sync_bn else 'rank'} ({world} rank(s), sync_bn "
                             f"{'on' if self.sync_bn else 'off'})")
        self.train_set = ADE20K(cfg.data.root, "train", cfg.data.crop)
        self.val_set = ADE20K(cfg.data.root, "val")

    def build_model(self) -> nn.Module:
        m = self.cfg.model
        model = elsa_upernet(m.num_classes, m.backbone, m.init_checkpoint, m.channels, m.aux_channels,
                             drop_path_rate=m.drop_path_rate)
        return nn.SyncBatchNorm.convert_sync_batchnorm(model) if self.sync_bn else model

    def train_dataset(self, epoch: int) -> Dataset:
        return self.train_set

    def training_step(self, model, batch, trainer: Trainer) -> dict[str, torch.Tensor]:
        x, y = batch
        out = model(x)
        out, aux = out if isinstance(out, tuple) else (out, None)
        seg = F.cross_entropy(out, y, ignore_index=255)
        losses = {"loss_seg": seg}
        if aux is not None:
            losses["loss_aux"] = self.cfg.model.aux_weight * F.cross_entropy(aux, y, ignore_index=255)
        return {"loss": sum(losses.values()), **losses}

    def evaluate(self, model, trainer: Trainer) -> dict[str, float]:
        return evaluate_miou(model, self.val_set, self.cfg.model.num_classes, trainer.device,
                             self.cfg.data.ms_flip, self.cfg.data.eval_max_images)


def _dist_world() -> tuple[int, str]:
    """(world size, backend) of the process group, (1, "") without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), str(dist.get_backend())
    return 1, ""


def main(argv: list[str] | None = None) -> dict:
    return train_main("python -m elsa.segmentation", __doc__, SegConfig,
                      lambda cfg, run_dir: SegmentationTask(cfg), argv)


if __name__ == "__main__":
    main()
