"""Data for KVT: ImageNet-1k folders (DeiT recipe) and the embedded cluttered digits.

ImageNet layout (torchvision ``ImageFolder``, as DeiT's ``--data-path``)::

    <root>/train/<wnid>/*.JPEG     1000 class folders, 1,281,167 images
    <root>/val/<wnid>/*.JPEG       1000 class folders, 50 images each

``python -m shared.data.verify imagenet <root>`` checks it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from shared.data.digits import cluttered_digits
from shared.data.imagenet import IMG_EXT, ImageNetAugment, imagenet_problems
from shared.data.imagenet import imagenet_datasets as shared_imagenet_datasets

N_CLASSES = 1000
VAL_PER_CLASS = 50


def verify_imagenet(root: Path, n_classes: int = N_CLASSES, val_per_class: int = VAL_PER_CLASS) -> list[str]:
    """Problems with an ImageNet folder tree (``shared.data.imagenet``), plus DeiT's exact val count per class
    (``val_per_class``); train folders are only counted in total by the shared check, not here (slow)."""
    problems = imagenet_problems(root, n_classes, count_images=False)
    val = Path(root) / "val"
    if val.is_dir():
        for d in sorted(p for p in val.iterdir() if p.is_dir()):
            n = sum(1 for f in d.iterdir() if f.suffix.lower() in IMG_EXT)
            if n != val_per_class:
                problems.append(f"{d}: expected {val_per_class} images, found {n}")
    return problems


def imagenet_datasets(root: str | Path, img_size: int = 224, crop_pct: float = 0.875,
                      auto_augment: str = "rand-m9-mstd0.5-inc1", color_jitter: float = 0.4,
                      reprob: float = 0.25, remode: str = "pixel", interpolation: str = "bicubic"):
    """(train, val) ``ImageFolder`` datasets with DeiT's transforms (``shared.data.imagenet``)."""
    aug = ImageNetAugment(auto_augment=auto_augment, color_jitter=color_jitter, reprob=reprob, remode=remode,
                          train_interpolation=interpolation, eval_interpolation=interpolation,
                          eval_crop_pct=crop_pct)
    try:
        return shared_imagenet_datasets(root, img_size, aug, classes=None)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"ImageNet split not found: {e}") from None


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
