"""Data for ELSA: ImageNet-1k folders with the official recipe's augmentation, and the embedded
cluttered digits (32x32, 1 channel) for the CPU default.

ImageNet layout (same as ``python -m shared.data.verify imagenet1k ROOT`` checks)::

    ROOT/train/<wnid>/*.JPEG     1000 class folders
    ROOT/val/<wnid>/*.JPEG       1000 class folders (val regrouped into class folders)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset, TensorDataset

_IMG_EXT = (".jpeg", ".jpg", ".png")


@dataclass
class DataConfig:
    dataset: str = "imagenet1k"  # imagenet1k | cluttered_digits
    root: str = ""
    num_classes: int = 1000
    # cluttered digits (embedded): sizes of the fixed split
    n_train: int = 6000
    n_test: int = 1000
    # official recipe (timm 0.4.9 train.py flags, spec section 4)
    auto_augment: str = "rand-m9-mstd0.5-inc1"
    color_jitter: float = 0.4
    reprob: float = 0.25
    remode: str = "pixel"
    train_interpolation: str = "random"
    mixup: float = 0.8
    cutmix: float = 1.0
    smoothing: float = 0.1
    eval_interpolation: str = "bicubic"
    eval_crop_pct: float = 0.9
    eval_batch_size: int = 256


def folder_problems(root: Path, classes: int | None = 1000) -> list[str]:
    """Problems with an ImageNet-style ``{train,val}/<class>/*`` tree; ``[]`` when usable."""
    problems = []
    for split in ("train", "val"):
        d = Path(root) / split
        if not d.is_dir():
            problems.append(f"{d}: missing folder (expected {split}/<wnid>/*.JPEG)")
            continue
        found = [p for p in d.iterdir() if p.is_dir()]
        if classes is not None and len(found) != classes:
            problems.append(f"{d}: expected {classes} class folders, found {len(found)}")
        loose = [p.name for p in d.iterdir() if p.is_file() and p.suffix.lower() in _IMG_EXT]
        if loose:
            problems.append(f"{d}: {len(loose)} images directly in {split}/ (e.g. {loose[0]}); "
                            "regroup them into class folders")
    return problems


def imagenet_datasets(cfg: DataConfig, img_size: int) -> tuple[Dataset, Dataset]:
    """(train, val) ``ImageFolder`` datasets with timm's transforms as in the official recipe."""
    from timm.data import create_transform
    from torchvision.datasets import ImageFolder

    problems = folder_problems(Path(cfg.root), cfg.num_classes)
    if problems:
        raise FileNotFoundError(f"data.root={cfg.root}: " + "; ".join(problems[:3]))
    train_tf = create_transform(img_size, is_training=True, auto_augment=cfg.auto_augment or None,
                                color_jitter=cfg.color_jitter, re_prob=cfg.reprob, re_mode=cfg.remode,
                                interpolation=cfg.train_interpolation)
    val_tf = create_transform(img_size, is_training=False, interpolation=cfg.eval_interpolation,
                              crop_pct=cfg.eval_crop_pct)
    root = Path(cfg.root)
    return ImageFolder(root / "train", train_tf), ImageFolder(root / "val", val_tf)


def digits_datasets(cfg: DataConfig) -> tuple[TensorDataset, TensorDataset]:
    """(train, test) cluttered digits: (N, 1, 32, 32) normalised images and labels; fixed split."""
    from shared.data import cluttered_digits

    d = cluttered_digits(n_train=cfg.n_train, n_test=cfg.n_test)
    return (TensorDataset(torch.from_numpy(d.train_x), torch.from_numpy(d.train_y)),
            TensorDataset(torch.from_numpy(d.test_x), torch.from_numpy(d.test_y)))


def build_datasets(cfg: DataConfig, img_size: int) -> tuple[Dataset, Dataset]:
    """(train, eval) datasets for ``cfg.dataset``; bad settings raise a one-line ``ValueError``."""
    if cfg.dataset == "imagenet1k":
        if not cfg.root:
            raise ValueError("data.root: set it to the ImageNet-1k folder (data.root=/data/imagenet)")
        return imagenet_datasets(cfg, img_size)
    if cfg.dataset == "cluttered_digits":
        if img_size != 32 or cfg.num_classes != 10:
            raise ValueError(f"cluttered_digits needs model.img_size=32 and data.num_classes=10, "
                             f"got {img_size} and {cfg.num_classes}")
        return digits_datasets(cfg)
    raise ValueError(f"data.dataset must be imagenet1k | cluttered_digits, got '{cfg.dataset}'")
