"""ELSA-Swin in torchvision's Mask R-CNN (FPN) on COCO: the paper's detection row without mmdet.

    python -m elsa.detection --config elsa/configs/maskrcnn_elsa-swin-tiny-fpn_8xb2-1x_coco.yaml \\
        data.root=/data/coco model.init_checkpoint=/weights/elsa_swin_tiny.pth
    GPUS=8 DATA_ROOT=/data/coco WEIGHTS=/weights/elsa_swin_tiny.pth TASK=coco bash elsa/scripts/dense.sh

What follows the official detection code (damo-cv/ELSA ``det/``: mmdet's Swin recipe,
``configs/_base_/models/mask_rcnn_elsa_swin_fpn.py``, ``configs/elsa_swin/mask_elsa_tiny_1x.py``) and what
torchvision does differently:

* Backbone: ELSA-Swin-T (``features_only``, all four stages, strides 4..32) with a LayerNorm on every
  output map, as mmdet's Swin backbone (and ELSA's copy of it) has; drop path 0.2; ImageNet weights
  from a released ELSA-Swin file (``model.init_checkpoint``, strict).
* Neck: FPN 256 channels, 5 levels (max-pool on the top level), torchvision's ``FeaturePyramidNetwork``.
* Heads, anchors, samplers, losses, post-processing: **torchvision's Mask R-CNN**, not mmdet's (their
  defaults are close, e.g. the same 1x recipe; mmdet's L1 box loss vs torchvision's smooth L1 differ).
* 1x recipe: AdamW 1e-4, weight decay 0.05, batch 16 (8 GPUs x 2), 12 epochs, lr x0.1 after epochs 8
  and 11; mmdet's 500-iteration linear warm-up is one warm-up epoch here (the engine warms up in
  epochs). Images: shorter side 800, longer <= 1333 (torchvision's transform), random flip. The paper
  trains with mmdet's multi-scale crop augmentation only for the 3x schedule (not configured here).
* Evaluation: COCO box and mask AP (pycocotools ``COCOeval``) on val2017.

Data (``python -m shared.data.verify`` does not cover COCO; :func:`coco_problems` does)::

    ROOT/train2017/*.jpg  ROOT/val2017/*.jpg  ROOT/annotations/instances_{train,val}2017.json
"""
from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from shared.cli import train_main
from shared.engine import RunConfig, Task, Trainer

from . import volo  # noqa: F401  (registers the ELSA-VOLO names too)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (mmdet Swin's per-output ``norm{i}``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class TimmFPNBackbone(nn.Module):
    """A timm ``features_only`` model + FPN, in the form torchvision's detectors take (``out_channels``,
    OrderedDict of maps), like ``torchvision.models.detection.backbone_utils.BackboneWithFPN``.

    x (B, 3, H, W), H and W multiples of 32 -> OrderedDict '0'..'3' (strides 4..32) and 'pool' (64).
    """

    def __init__(self, body: nn.Module, out_channels: int = 256, norm_outputs: bool = True):
        super().__init__()
        self.body = body
        chs = body.feature_info.channels()
        self.norms = nn.ModuleList([LayerNorm2d(c) if norm_outputs else nn.Identity() for c in chs])
        self.fpn = FeaturePyramidNetwork(chs, out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        feats = self.body(x)
        return self.fpn(OrderedDict((str(i), n(f)) for i, (n, f) in enumerate(zip(self.norms, feats))))


def elsa_backbone(name: str = "elsa_swin_tiny", init_checkpoint: str = "", **kwargs: Any) -> nn.Module:
    """A timm ELSA model with ``features_only=True`` on any input size (multiples of 32); optionally
    initialised from a released ELSA-Swin classification file (strict, head dropped)."""
    if name.startswith(("elsa_swin", "swin")):  # Swin builds its attention masks per input size then
        kwargs.setdefault("strict_img_size", False)
    body = timm.create_model(name, features_only=True, **kwargs)
    if init_checkpoint:
        from .checkpoint import load_official_checkpoint

        full = timm.create_model(name, **{k: v for k, v in kwargs.items() if k != "out_indices"})
        load_official_checkpoint(full, init_checkpoint)
        missing, unexpected = body.model.load_state_dict(full.state_dict(), strict=False)
        if missing:
            raise ValueError(f"{init_checkpoint}: backbone keys not in the checkpoint: {missing[:5]}")
    return body


def elsa_maskrcnn(num_classes: int = 91, backbone: str = "elsa_swin_tiny", init_checkpoint: str = "",
                  fpn_channels: int = 256, min_size: int = 800, max_size: int = 1333,
                  **backbone_kwargs: Any) -> nn.Module:
    """torchvision ``MaskRCNN`` on an ELSA backbone + FPN (``num_classes`` includes the background)."""
    from torchvision.models.detection import MaskRCNN

    body = elsa_backbone(backbone, init_checkpoint, **backbone_kwargs)
    return MaskRCNN(TimmFPNBackbone(body, fpn_channels), num_classes=num_classes, min_size=min_size,
                    max_size=max_size)


# ----------------------------------------------------------------------------------------------- data
def coco_problems(root: str | Path, split: str = "val2017") -> list[str]:
    """What is missing from a COCO tree for ``split`` (empty list: usable)."""
    root = Path(root)
    problems = []
    if not (root / split).is_dir():
        problems.append(f"{root / split}: image folder missing")
    ann = root / "annotations" / f"instances_{split}.json"
    if not ann.is_file():
        problems.append(f"{ann}: annotation file missing")
    return problems


def coco_dataset(root: str | Path, split: str, train: bool) -> Dataset:
    """torchvision's ``CocoDetection`` wrapped for detection models (boxes XYXY, masks, labels), with a
    random horizontal flip when ``train``; images crowd-free boxes only (torchvision's wrapper)."""
    from torchvision import datasets
    from torchvision.transforms import v2

    problems = coco_problems(root, split)
    if problems:
        raise FileNotFoundError("; ".join(problems))
    tf = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if train:
        tf = [v2.RandomHorizontalFlip(0.5)] + tf + [v2.SanitizeBoundingBoxes()]
    ds = datasets.CocoDetection(str(Path(root) / split), str(Path(root) / "annotations" / f"instances_{split}.json"),
                                transforms=v2.Compose(tf))
    return datasets.wrap_dataset_for_transforms_v2(ds, target_keys=("image_id", "boxes", "labels", "masks"))


def collate(batch: list) -> tuple:
    return tuple(zip(*batch))


@torch.no_grad()
def coco_evaluate(model: nn.Module, dataset: Dataset, batch_size: int, device: torch.device,
                  max_images: int = 0) -> dict[str, float]:
    """COCO box and mask AP (%) of ``model`` on ``dataset`` (wrapped ``CocoDetection``) via ``COCOeval``."""
    from pycocotools import mask as mask_util
    from pycocotools.cocoeval import COCOeval

    coco = dataset._dataset.coco if hasattr(dataset, "_dataset") else dataset.coco
    n = len(dataset) if max_images <= 0 else min(max_images, len(dataset))
    sub = torch.utils.data.Subset(dataset, range(n))
    boxes, segms, ids = [], [], []
    for images, targets in DataLoader(sub, batch_size=batch_size, collate_fn=collate):
        outs = model([im.to(device) for im in images])
        for out, tgt in zip(outs, targets):
            img_id = int(tgt["image_id"])
            ids.append(img_id)
            b = out["boxes"].cpu().numpy()
            for k in range(len(b)):
                x0, y0, x1, y1 = b[k].tolist()
                rec = {"image_id": img_id, "category_id": int(out["labels"][k]), "score": float(out["scores"][k])}
                boxes.append(rec | {"bbox": [x0, y0, x1 - x0, y1 - y0]})
                m = (out["masks"][k, 0] > 0.5).cpu().numpy().astype(np.uint8)
                rle = mask_util.encode(np.asfortranarray(m))
                rle["counts"] = rle["counts"].decode("ascii")
                segms.append(rec | {"segmentation": rle})
    res = {}
    for kind, dets in (("bbox", boxes), ("segm", segms)):
        if not dets:
            res[f"{kind}_AP"] = 0.0
            continue
        ev = COCOeval(coco, coco.loadRes(json.loads(json.dumps(dets))), kind)
        ev.params.imgIds = ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        res[f"{kind}_AP"] = float(ev.stats[0]) * 100
        res[f"{kind}_AP50"] = float(ev.stats[1]) * 100
    return res


# ----------------------------------------------------------------------------------------------- task
@dataclass
class DetModelConfig:
    backbone: str = "elsa_swin_tiny"
    drop_path_rate: float = 0.2
    init_checkpoint: str = ""  # released ELSA-Swin ImageNet file (official layout), loaded strictly
    num_classes: int = 91  # torchvision's COCO category ids 1..90 + background
    fpn_channels: int = 256
    min_size: int = 800
    max_size: int = 1333


@dataclass
class DetDataConfig:
    root: str = ""
    train_split: str = "train2017"
    val_split: str = "val2017"
    eval_batch_size: int = 2
    eval_max_images: int = 0  # 0: the whole split


@dataclass
class DetConfig(RunConfig):
    model: DetModelConfig = field(default_factory=DetModelConfig)
    data: DetDataConfig = field(default_factory=DetDataConfig)


class DetectionTask(Task):
    """Mask R-CNN training: the loss is the sum of torchvision's five losses (all logged)."""

    collate_fn = staticmethod(collate)

    def __init__(self, cfg: DetConfig):
        self.cfg = cfg
        if not cfg.data.root:
            raise ValueError("data.root: set it to the COCO folder (data.root=/data/coco)")
        self.train_set = coco_dataset(cfg.data.root, cfg.data.train_split, train=True)
        self.val_set = coco_dataset(cfg.data.root, cfg.data.val_split, train=False)

    def build_model(self) -> nn.Module:
        m = self.cfg.model
        return elsa_maskrcnn(m.num_classes, m.backbone, m.init_checkpoint, m.fpn_channels, m.min_size,
                             m.max_size, drop_path_rate=m.drop_path_rate)

    def train_dataset(self, epoch: int) -> Dataset:
        return self.train_set

    def training_step(self, model, batch, trainer: Trainer) -> dict[str, torch.Tensor]:
        images, targets = batch
        losses = model(list(images), [{k: v for k, v in t.items() if k != "image_id"} for t in targets])
        return {"loss": sum(losses.values()), **losses}

    def evaluate(self, model, trainer: Trainer) -> dict[str, float]:
        return coco_evaluate(model, self.val_set, self.cfg.data.eval_batch_size, trainer.device,
                             self.cfg.data.eval_max_images)


def main(argv: list[str] | None = None) -> dict:
    return train_main("python -m elsa.detection", __doc__, DetConfig, lambda cfg, run_dir: DetectionTask(cfg), argv)


if __name__ == "__main__":
    main()
