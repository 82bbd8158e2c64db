"""Data for ELSA: ImageNet-1k folders with the official recipe's augmentation, and the embedded
32x32 digit sets for the CPU default:

* ``shifted_digits`` (the default, spec section 10): scikit-learn's 1,797 handwritten digits, upscaled
  8 -> 24 px and pasted at a random +-4 px offset into a 32x32 canvas with Gaussian noise; a 1,500 / 297
  split. The draw (split, offsets, noise) follows the run's seed (``data.seed=-1``) or a fixed ``data.seed``.
* ``cluttered_digits`` (``shared.data``): a digit among fragments of other digits. The micro Swins of
  the embedded run (all three mixers) stay at chance on it for the 200-400 steps the CPU budget allows,
  so it is kept as an option, not the default.

ImageNet layout (same as ``python -m shared.data.verify imagenet ROOT`` checks)::

    ROOT/train/<wnid>/*.JPEG     1000 class folders
    ROOT/val/<wnid>/*.JPEG       1000 class folders (val regrouped into class folders)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset, TensorDataset

from shared.data.imagenet import ImageNetAugment, imagenet_problems
from shared.data.imagenet import imagenet_datasets as shared_imagenet_datasets


@dataclass
class DataConfig:
    dataset: str = "imagenet1k"  # imagenet1k | shifted_digits | cluttered_digits
    root: str = ""
    num_classes: int = 1000
    # embedded digits: cluttered_digits split sizes; shifted_digits offset range (px) and noise std
    n_train: int = 6000
    n_test: int = 1000
    max_shift: int = 4
    noise: float = 0.1
    seed: int = -1  # shifted_digits draw (permutation, offsets, noise): -1 = follow engine.seed
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
    """Problems with an ImageNet-style ``{train,val}/<class>/*`` tree (``shared.data.imagenet``)."""
    return imagenet_problems(root, classes, count_images=False)


def imagenet_datasets(cfg: DataConfig, img_size: int) -> tuple[Dataset, Dataset]:
    """(train, val) ``ImageFolder`` datasets with timm's transforms as in the official recipe."""
    aug = ImageNetAugment(auto_augment=cfg.auto_augment, color_jitter=cfg.color_jitter, reprob=cfg.reprob,
                          remode=cfg.remode, train_interpolation=cfg.train_interpolation,
                          eval_interpolation=cfg.eval_interpolation, eval_crop_pct=cfg.eval_crop_pct)
    try:
        return shared_imagenet_datasets(cfg.root, img_size, aug, classes=cfg.num_classes)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"data.root={cfg.root}: {e}") from None


def token_label_train_set(cfg: DataConfig, img_size: int, label_root: str, images: Dataset | None = None) -> Dataset:
    """ImageNet ``train/`` with VOLO's token-label maps and the official label-aware augmentation
    (``elsa.token_label``); the evaluation set stays ``imagenet_datasets``'s. ``images``: an ``ImageFolder``
    of ``train/`` already listed (its samples are reused)."""
    from .token_label import TokenLabelImageFolder, TokenLabelTransform

    if cfg.dataset != "imagenet1k":
        raise ValueError(f"train.token_label needs data.dataset=imagenet1k (label maps exist for ImageNet), "
                         f"got '{cfg.dataset}'")
    if not label_root:
        raise ValueError("train.token_label_root: set it to the label-map folder (<root>/<wnid>/<stem>.pt)")
    tf = TokenLabelTransform(img_size, cfg.auto_augment, cfg.color_jitter, cfg.reprob, cfg.remode,
                             cfg.train_interpolation)
    return TokenLabelImageFolder(images if images is not None else Path(cfg.root) / "train", label_root, tf,
                                 cfg.num_classes)


def digits_datasets(cfg: DataConfig) -> tuple[TensorDataset, TensorDataset]:
    """(train, test) cluttered digits: (N, 1, 32, 32) normalised images and labels; fixed split."""
    from shared.data import cluttered_digits

    return cluttered_digits(n_train=cfg.n_train, n_test=cfg.n_test).tensor_datasets()


def shifted_digits(max_shift: int = 4, noise: float = 0.1, seed: int = 0, n_train: int = 1500
                   ) -> tuple[TensorDataset, TensorDataset]:
    """(train, test) of scikit-learn digits, (N, 1, 32, 32) normalised, each upscaled to 24x24 and
    pasted at ``4 + U{-max_shift..max_shift}`` px in both axes, plus N(0, noise) (pixel range 0..1).
    Fixed by ``seed``: the first ``n_train`` of a permutation train, the rest (297) test."""
    import cv2
    import numpy as np
    from sklearn.datasets import load_digits

    if not 0 <= max_shift <= 4:
        raise ValueError(f"data.max_shift must be in 0..4 (a 24 px digit in a 32 px canvas), got {max_shift}")
    d = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(d.images))
    x = np.zeros((len(order), 32, 32), np.float32)
    offsets = 4 + rng.integers(-max_shift, max_shift + 1, size=(len(order), 2))
    for i, j in enumerate(order):
        big = cv2.resize(d.images[j].astype(np.float32) / 16.0, (24, 24), interpolation=cv2.INTER_LINEAR)
        oy, ox = offsets[i]
        x[i, oy:oy + 24, ox:ox + 24] = big
    x += rng.normal(0.0, noise, x.shape).astype(np.float32)
    y = d.target[order].astype(np.int64)
    mean, std = float(x[:n_train].mean()), float(x[:n_train].std())
    x = torch.from_numpy((x - mean) / std)[:, None]
    y = torch.from_numpy(y)
    return TensorDataset(x[:n_train], y[:n_train]), TensorDataset(x[n_train:], y[n_train:])


def build_datasets(cfg: DataConfig, img_size: int, seed: int = 0) -> tuple[Dataset, Dataset]:
    """(train, eval) datasets for ``cfg.dataset``; bad settings raise a one-line ``ValueError``.
    ``seed``: the run's seed, used for the shifted-digits draw unless ``cfg.seed >= 0``."""
    if cfg.dataset == "imagenet1k":
        if not cfg.root:
            raise ValueError("data.root: set it to the ImageNet-1k folder (data.root=/data/imagenet)")
        return imagenet_datasets(cfg, img_size)
    if cfg.dataset in ("shifted_digits", "cluttered_digits"):
        if img_size != 32 or cfg.num_classes != 10:
            raise ValueError(f"{cfg.dataset} needs model.img_size=32 and data.num_classes=10, "
                             f"got {img_size} and {cfg.num_classes}")
        if cfg.dataset == "shifted_digits":
            return shifted_digits(cfg.max_shift, cfg.noise, cfg.seed if cfg.seed >= 0 else seed)
        return digits_datasets(cfg)
    raise ValueError(f"data.dataset must be imagenet1k | shifted_digits | cluttered_digits, got '{cfg.dataset}'")
