"""Train the TransFGU decoder (stage 3, ``<ds>_trainval.py``) on CAM pseudo labels with bootstrapping.

    python -m transfgu.generate --data-root /data/VOC2012 --dino /w/dino_deitsmall8_pretrain.pth --out /data/fgu_voc
    python -m transfgu.train --config transfgu/configs/transfgu_vit-s8_1xb512-100e_voc.yaml \\
        data.root=/data/VOC2012 data.pseudo_labels=/data/fgu_voc model.dino=/w/dino_deitsmall8_pretrain.pth
    torchrun --nproc_per_node=4 -m transfgu.train --config ...      # DDP (engine.batch_size is the global batch)

The encoder (DINO ViT-S/8) is frozen and run without gradients; only the decoder learns. At the start of epoch e,
when ``e >= fgu.start`` and ``e % I(e) == 0``, the teacher becomes a copy of the student and the student decoder is
reset to its initial weights (the Adam state is kept). Evaluation every epoch; ``best.pt`` by ``acc + mIoU`` on
val, as the official code selects (report ``last`` beside it).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from shared.cli import train_main
from shared.engine import RunConfig, Task

from .data import build_dataset
from .losses import transfgu_loss
from .model import MaskTransformer, create_encoder, load_dino_encoder
from .pipeline import augment, bootstrap_refresh, colour_augment, patch_tokens, score_maps


@dataclass
class ModelConfig:
    dino: str = ""  # dino_deitsmall8_pretrain.pth (or a DINO full checkpoint); empty = random encoder (tests only)
    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    patch_size: int = 8
    pretrain_size: int = 224  # image size the DINO pos-embed is stored for (28x28 at patch 8); resampled per forward
    dec_layers: int = 2
    dec_heads: int = 6
    dec_mlp: int = 1536
    dec_dropout: float = 0.1


@dataclass
class DataConfig:
    name: str = "voc"  # voc | coco | cityscapes | lip (transfgu.data.build_dataset)
    root: str = ""
    pseudo_labels: str = ""  # folder of <image id>.pt CAMs (C, h, w) written by transfgu.generate
    size: int = 320  # dataset.resize R: train images squashed to input_size(name, R) (R^2, R x 2R, 2R x R)
    eval_size: int = 0  # R at evaluation; 0 = size (official LIP-5/16 train at R=240, evaluate at 320)
    classes: int = 20  # class set: VOC 20, COCO 27/171/80, Cityscapes 27, LIP 5/16/19
    num_classes: int = 21  # decoder channels: classes + 1 (background) for things-only sets
    cam_channels: int = 0  # use the first N CAM channels (COCO-80: the 80 thing CAMs of the 171 run); 0 = all
    curated: str = ""  # COCO: optional curated_{split}.txt list (IIC/PiCIE); "{split}" is filled in
    repeat: int = 20  # the official VOC/Cityscapes train list is repeated x20 per epoch (COCO, LIP: 1)


@dataclass
class FGUConfig:
    things_only: bool = True  # VOC / LIP / COCO-80: background channel from the CAM (bg = relu(.1 - max P))
    start: int = 5  # bootstrapping start epoch (VOC 5; COCO 3; Cityscapes 1)
    intervals: list[int] = field(default_factory=lambda: [5, 5, 5, 5, 4, 4, 4, 4, 4, 3])
    loss_weights: list[float] = field(default_factory=lambda: [1.0, 0.3, 1.0])
    colour_aug: bool = True  # official jitter / grayscale / blur, each decided once per batch


@dataclass
class TransFGUConfig(RunConfig):
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    fgu: FGUConfig = field(default_factory=FGUConfig)


class CAMDataset(Dataset):
    """``(image (3, S, S), CAM (C, h, w))`` pairs: the VOC train split joined with the generated CAM files."""

    def __init__(self, images: Dataset, ids: list[str], cam_dir: str | Path, repeat: int = 1, channels: int = 0):
        self.images, self.ids, self.dir, self.repeat, self.channels = images, ids, Path(cam_dir), repeat, channels
        missing = [i for i in ids if not (self.dir / f"{i}.pt").is_file()]
        if missing:
            raise FileNotFoundError(f"{self.dir / (missing[0] + '.pt')}: pseudo label missing "
                                    f"({len(missing)} of {len(ids)}; run python -m transfgu.generate first)")

    def __len__(self) -> int:
        return len(self.ids) * self.repeat

    def __getitem__(self, i: int):
        i %= len(self.ids)
        cam = torch.load(self.dir / f"{self.ids[i]}.pt", weights_only=True).float()
        return self.images[i][0], cam[:self.channels] if self.channels else cam


class Segmenter(nn.Module):
    """Frozen encoder + trainable decoder; ``forward(images) -> logits (N, C, h, w)``."""

    def __init__(self, cfg: TransFGUConfig):
        super().__init__()
        m = cfg.model
        self.patch = m.patch_size
        self.encoder = create_encoder(m.embed_dim, m.depth, m.num_heads, m.patch_size, m.pretrain_size)
        if m.dino:
            load_dino_encoder(self.encoder, m.dino)
        self.encoder.requires_grad_(False)
        self.decoder = MaskTransformer(cfg.data.num_classes, m.embed_dim, m.embed_dim, m.dec_layers, m.dec_heads,
                                       m.dec_mlp, m.dec_dropout)

    def forward(self, x: torch.Tensor, teacher: nn.Module | None = None):
        """``(logits (N, C, h, w), class embeddings (N, C, d))``, plus the teacher's logits when given."""
        self.encoder.eval()
        tok, grid = patch_tokens(self.encoder, x, self.patch)
        logits, emb = self.decoder(tok, grid)
        if teacher is None:
            return logits, emb
        with torch.no_grad():
            return logits, emb, teacher(tok, grid)[0]


class TransFGUTask(Task):
    def __init__(self, cfg: TransFGUConfig):
        self.cfg = cfg
        self.teacher: nn.Module | None = None
        self.k = 0
        self.gen = torch.Generator().manual_seed(cfg.engine.seed)
        self.init_state: dict | None = None

    def build_model(self) -> nn.Module:
        model = Segmenter(self.cfg)
        self.init_state = copy.deepcopy(model.decoder.state_dict())
        for p in model.decoder.parameters():  # official: gradients clamped elementwise to [-1, 1]
            p.register_hook(lambda g: g.clamp(-1, 1))
        return model

    def param_groups(self, model: nn.Module) -> list[dict]:
        """Weight decay on decoder weights (>= 2-D) only; the encoder is frozen."""
        ps = [p for p in model.parameters() if p.requires_grad]
        wd = self.cfg.optim.weight_decay
        return [{"params": [p for p in ps if p.ndim >= 2], "weight_decay": wd},
                {"params": [p for p in ps if p.ndim < 2], "weight_decay": 0.0}]

    def _dataset(self, split: str) -> Dataset:
        d = self.cfg.data
        resize = d.size if split == "train" else (d.eval_size or d.size)
        return build_dataset(d.name, d.root, split, d.classes, resize, d.curated.format(split=split))

    def train_dataset(self, epoch: int) -> Dataset:
        ds = self._dataset("train")
        return CAMDataset(ds, ds.ids, self.cfg.data.pseudo_labels, self.cfg.data.repeat, self.cfg.data.cam_channels)

    def on_epoch_start(self, trainer, epoch: int) -> None:
        f = self.cfg.fgu
        if bootstrap_refresh(epoch, f.start, f.intervals):
            self.teacher = copy.deepcopy(trainer.model.decoder).eval().requires_grad_(False)
            trainer.model.decoder.load_state_dict(self.init_state)
            self.k = 0
        elif self.teacher is not None:
            self.k += 1

    def training_step(self, model: nn.Module, batch, trainer) -> dict[str, torch.Tensor]:
        images, cams = (t.to(trainer.device) for t in batch)
        inner = getattr(model, "module", model)
        x, cam = augment(images, cams, inner.patch, self.gen)  # official: crops resized to H/2
        if self.cfg.fgu.colour_aug:
            x = colour_augment(x)
        if self.teacher is None:
            (logits, emb), t_logits = model(x), None
        else:  # through the (DDP-wrapped) model, so that gradients are synchronised
            logits, emb, t_logits = model(x, self.teacher.to(x.device))
        out = transfgu_loss(logits, emb, cam, t_logits, self.k, self.cfg.fgu.things_only,
                            tuple(self.cfg.fgu.loss_weights))
        if out["loss"].item() <= 0:  # official: the step is skipped; here the loss is zeroed (Adam still steps)
            out["loss"] = out["loss"] * 0
        return out

    @torch.no_grad()
    def evaluate(self, model: nn.Module, trainer) -> dict[str, float]:
        val = self._dataset("val")
        logits, labels = [], []
        for x, y in DataLoader(val, batch_size=8, num_workers=self.cfg.engine.num_workers):
            logits.append(model(x.to(trainer.device))[0].cpu())
            labels.append(y)
        s = score_maps(torch.cat(logits), torch.cat(labels), self.cfg.data.num_classes)
        return {"mIoU": s["mIoU"], "acc": s["acc"], "acc_plus_mIoU": s["mIoU"] + s["acc"]}

    def state_dict(self) -> dict:
        return {"k": self.k, "teacher": None if self.teacher is None else self.teacher.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.k = state.get("k", 0)
        if state.get("teacher") is not None:
            self.teacher = Segmenter(self.cfg).decoder
            self.teacher.load_state_dict(state["teacher"])
            self.teacher.eval().requires_grad_(False)


def build_task(cfg: TransFGUConfig) -> TransFGUTask:
    return TransFGUTask(cfg)


def main(argv=None):
    return train_main("python -m transfgu.train", __doc__, TransFGUConfig, lambda cfg, run_dir: build_task(cfg), argv)


if __name__ == "__main__":
    main()
