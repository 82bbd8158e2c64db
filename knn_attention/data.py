"""Data for KVT: ImageNet-1k folders (DeiT recipe) and the embedded cluttered digits.

ImageNet layout (torchvision ``ImageFolder``, as DeiT's ``--data-path``)::

    <root>/train/<wnid>/*.JPEG     1000 class folders, 1,281,167 images
    <root>/val/<wnid>/*.JPEG       1000 class folders, 50 images each

``python -m shared.data.verify imagenet <root>`` checks it.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from shared.data.digits import cluttered_digits

IMG_EXT = (".jpeg", ".jpg", ".png")
N_CLASSES = 1000
VAL_PER_CLASS = 50


def _class_dirs(split: Path) -> list[Path]:
    return sorted(p for p in split.iterdir() if p.is_dir()) if split.is_dir() else []


def verify_imagenet(root: Path, n_classes: int = N_CLASSES, val_per_class: int = VAL_PER_CLASS) -> list[str]:
    """Problems with an ImageNet folder tree; [] when it is complete. Train folders are only checked
    to be non-empty (counting 1.28M files is slow); val counts are exact."""
    root = Path(root)
    problems: list[str] = []
    classes: dict[str, list[str]] = {}
    for split in ("train", "val"):
        dirs = _class_dirs(root / split)
        if not dirs:
            problems.append(f"{root / split}: missing or has no class folders")
            continue
        classes[split] = [d.name for d in dirs]
        if len(dirs) != n_classes:
            problems.append(f"{root / split}: expected {n_classes} class folders, found {len(dirs)}")
        for d in dirs:
            if split == "train":
                if not any(f.suffix.lower() in IMG_EXT for f in d.iterdir()):
                    problems.append(f"{d}: no images")
            else:
                n = sum(1 for f in d.iterdir() if f.suffix.lower() in IMG_EXT)
                if n != val_per_class:
                    problems.append(f"{d}: expected {val_per_class} images, found {n}")
    if len(classes) == 2 and classes["train"] != classes["val"]:
        only = sorted(set(classes["train"]) ^ set(classes["val"]))[:5]
        problems.append(f"{root}: train and val class folders differ (e.g. {', '.join(only)})")
    return problems


def imagenet_datasets(root: str | Path, img_size: int = 224, crop_pct: float = 0.875,
                      auto_augment: str = "rand-m9-mstd0.5-inc1", color_jitter: float = 0.4,
                      reprob: float = 0.25, remode: str = "pixel", interpolation: str = "bicubic"):
    """(train, val) ``ImageFolder`` datasets with DeiT's transforms (timm ``create_transform``)."""
    from timm.data import create_transform
    from torchvision.datasets import ImageFolder

    root = Path(root)
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise FileNotFoundError(f"{root / split}: ImageNet split not found "
                                    f"(expected <root>/{{train,val}}/<wnid>/*.JPEG)")
    train_tf = create_transform(img_size, is_training=True, color_jitter=color_jitter,
                                auto_augment=auto_augment, interpolation=interpolation, re_prob=reprob,
                                re_mode=remode, re_count=1)
    val_tf = create_transform(img_size, is_training=False, interpolation=interpolation, crop_pct=crop_pct)
    return ImageFolder(str(root / "train"), transform=train_tf), ImageFolder(str(root / "val"), transform=val_tf)


class RepeatedAugDataset(Dataset):
    """DeiT's repeated augmentation as a dataset view: per epoch, ``ceil(len / repeats)`` images drawn
    by a seeded permutation, each listed ``repeats`` times, cut to ``len(base)`` entries.

    DeiT's ``RASampler`` sends the copies of an image to different GPUs; here the engine's
    (shuffling) sampler spreads them at random, which keeps the per-epoch content the same.
    """

    def __init__(self, base: Dataset, repeats: int, seed: int, epoch: int):
        if repeats < 1:
            raise ValueError(f"repeated augmentation: repeats must be >= 1, got {repeats}")
        n = len(base)
        g = torch.Generator().manual_seed(seed * 10_007 + epoch)
        chosen = torch.randperm(n, generator=g)[: math.ceil(n / repeats)]
        self.base, self.index = base, chosen.repeat_interleave(repeats)[:n].tolist()

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        return self.base[self.index[i]]


# ----------------------------------------------------------------------------- embedded default
class DigitsWithMasks:
    """Cluttered digits as tensors: train/test ``TensorDataset`` of (image, label) and the test digit
    masks per patch, ``(N_test, G*G)`` float fractions of digit pixels in each ``patch x patch`` cell."""

    def __init__(self, n_train: int = 6000, n_test: int = 1000, seed: int = 0, patch: int = 4,
                 clutter: int = 4, noise: float = 0.15):
        d = cluttered_digits(n_train=n_train, n_test=n_test, seed=seed, clutter=clutter, noise=noise)
        self.train = TensorDataset(torch.from_numpy(d.train_x), torch.from_numpy(d.train_y))
        self.test_x, self.test_y = torch.from_numpy(d.test_x), torch.from_numpy(d.test_y)
        m = d.test_mask.astype(np.float32)
        n, h, w = m.shape
        g = h // patch
        cells = m[:, : g * patch, : g * patch].reshape(n, g, patch, g, patch).mean(axis=(2, 4))
        self.test_patch_digit = torch.from_numpy(cells.reshape(n, g * g))
        self.num_classes = d.num_classes


def epoch_chunk(dataset: Dataset, epoch: int, samples: int, seed: int) -> Dataset:
    """``samples`` items for ``epoch``, walking a seeded permutation of ``dataset`` in order (so an
    engine "epoch" is a fixed number of steps and evaluations land at fixed step counts)."""
    n = len(dataset)
    if samples <= 0 or samples >= n:
        return dataset
    passes = (epoch + 1) * samples // n + 1
    g = torch.Generator().manual_seed(seed)
    order = torch.cat([torch.randperm(n, generator=g) for _ in range(passes + 1)])
    start = epoch * samples
    return Subset(dataset, order[start:start + samples].tolist())
