"""Data for the scaled-ReLU stem runs: ImageNet-1k folders with the DeiT recipe's augmentation, and the
embedded cluttered digits (32x32, 1 channel) for the CPU default.

ImageNet layout (``python -m shared.data.verify imagenet ROOT``)::

    ROOT/train/<wnid>/*.JPEG     1000 class folders, 1,281,167 images
    ROOT/val/<wnid>/*.JPEG       1000 class folders, 50,000 images (val regrouped into class folders)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset, TensorDataset

from shared.data.imagenet import IMAGENET_CLASSES, ImageNetAugment, imagenet_problems
from shared.data.imagenet import imagenet_datasets as shared_imagenet_datasets


@dataclass
class DataConfig:
    dataset: str = "imagenet1k"  # imagenet1k | cluttered_digits
    root: str = ""
    repeated_aug: bool = False  # DeiT's RASampler (timm RepeatAugSampler, 3 repeats); on in the ImageNet configs
    # cluttered digits (embedded): sizes of the split, drawn from ``draw_seed`` (None: the run's engine.seed,
    # so every seed has its own data draw)
    draw_seed: int | None = None
    n_train: int = 6000
    n_test: int = 1000
    clutter: int = 4  # digit fragments per canvas
    noise: float = 0.15  # Gaussian pixel noise (std, images in [0, 1])
    # DeiT recipe (timm names; spec section 4): RandAugment, random erasing, mixup/cutmix, smoothing
    auto_augment: str = "rand-m9-mstd0.5-inc1"
    color_jitter: float = 0.3
    reprob: float = 0.25
    remode: str = "pixel"
    interpolation: str = "bicubic"
    mixup: float = 0.8
    cutmix: float = 1.0
    smoothing: float = 0.1
    eval_crop_pct: float = 0.875
    eval_batch_size: int = 256
    probe_images: int = 256  # images of the test split used to measure token diversity


def verify_imagenet(root: Path, count_images: bool = True) -> list[str]:
    """Problems with an ImageNet-1k folder tree (``shared.data.imagenet``); ``[]`` when it is complete."""
    return imagenet_problems(root, IMAGENET_CLASSES, count_images)


def imagenet_datasets(cfg: DataConfig, img_size: int) -> tuple[Dataset, Dataset]:
    """(train, val) ``ImageFolder`` datasets with timm's DeiT transforms (``shared.data.imagenet``)."""
    aug = ImageNetAugment(auto_augment=cfg.auto_augment, color_jitter=cfg.color_jitter, reprob=cfg.reprob,
                          remode=cfg.remode, train_interpolation=cfg.interpolation,
                          eval_interpolation=cfg.interpolation, eval_crop_pct=cfg.eval_crop_pct)
    try:
        return shared_imagenet_datasets(cfg.root, img_size, aug)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"data.root={cfg.root}: {e}") from None


def digits_datasets(cfg: DataConfig, seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """(train, test) cluttered digits: (N, 1, 32, 32) normalised images and labels, drawn from ``seed``."""
    from shared.data import cluttered_digits

    return cluttered_digits(n_train=cfg.n_train, n_test=cfg.n_test, seed=seed, clutter=cfg.clutter,
                            noise=cfg.noise).tensor_datasets()


def build_datasets(cfg: DataConfig, img_size: int, seed: int = 0) -> tuple[Dataset, Dataset]:
    """(train, val) datasets; ``seed`` is the embedded data draw (ImageNet ignores it)."""
    if cfg.dataset == "imagenet1k":
        if not cfg.root:
            raise ValueError("data.root: set it to the ImageNet-1k folder (data.root=/data/imagenet)")
        return imagenet_datasets(cfg, img_size)
    if cfg.dataset == "cluttered_digits":
        if img_size != 32:
            raise ValueError(f"model.img_size must be 32 for cluttered_digits, got {img_size}")
        return digits_datasets(cfg, seed)
    raise ValueError(f"data.dataset must be imagenet1k | cluttered_digits, got '{cfg.dataset}'")
