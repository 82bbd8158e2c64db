"""Data for the scaled-ReLU stem runs: ImageNet-1k folders with the DeiT recipe's augmentation, and the
embedded cluttered digits (32x32, 1 channel) for the CPU default.

ImageNet layout (``python -m shared.data.verify imagenet ROOT``)::

    ROOT/train/<wnid>/*.JPEG     1000 class folders, 1,281,167 images
    ROOT/val/<wnid>/*.JPEG       1000 class folders, 50,000 images (val regrouped into class folders)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils.data import Dataset, TensorDataset

from shared.data.imagenet import IMAGENET_CLASSES, ImageNetAugment, imagenet_problems
from shared.data.imagenet import imagenet_datasets as shared_imagenet_datasets


@dataclass
class DataConfig:
    dataset: str = "imagenet1k"  # imagenet1k | cluttered_digits (32x32) | micro_digits (16x16, stability suite)
    root: str = ""
    repeated_aug: bool = False  # DeiT's RASampler (timm RepeatAugSampler, 3 repeats); on in the ImageNet configs
    # cluttered digits (embedded): sizes of the split, drawn from ``draw_seed`` (None: the run's engine.seed,
    # so every seed has its own data draw)
    draw_seed: int | None = None
    n_train: int = 6000
    n_test: int = 1000
    clutter: int = 4  # digit fragments per canvas
    noise: float = 0.15  # Gaussian pixel noise (std, images in [0, 1])
    digit_size: list[int] = field(default_factory=lambda: [10, 13])  # micro_digits: digit side, px (low, high)
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


def place_glyphs(glyphs: torch.Tensor, canvas: int, size: torch.Tensor, top: torch.Tensor, left: torch.Tensor,
                 angle: torch.Tensor) -> torch.Tensor:
    """Draw each ``(n, h, w)`` glyph, rotated by ``angle`` (radians) and scaled to ``size`` px, with its
    box's top-left corner at ``(top, left)`` on an empty ``canvas`` x ``canvas`` image: one ``grid_sample``
    for the whole batch (bilinear, zeros outside the glyph). Returns ``(n, canvas, canvas)``."""
    n = glyphs.shape[0]
    scale = canvas / size  # output (normalised, align_corners=False) -> glyph coordinates
    cy = (top + size / 2) / canvas * 2 - 1
    cx = (left + size / 2) / canvas * 2 - 1
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = scale * cos, scale * sin
    theta[:, 1, 0], theta[:, 1, 1] = -scale * sin, scale * cos
    theta[:, 0, 2] = -(theta[:, 0, 0] * cx + theta[:, 0, 1] * cy)
    theta[:, 1, 2] = -(theta[:, 1, 0] * cx + theta[:, 1, 1] * cy)
    grid = F.affine_grid(theta, [n, 1, canvas, canvas], align_corners=False)
    return F.grid_sample(glyphs[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]


def micro_digits(n_train: int, n_test: int, seed: int, canvas: int = 16, clutter: int = 1, noise: float = 0.1,
                 digit_size: tuple[int, int] = (10, 13),
                 test_writers: int = 400) -> tuple[TensorDataset, TensorDataset]:
    """(train, test) micro cluttered digits, ``(N, 1, canvas, canvas)`` normalised images and labels, all
    drawn from ``seed`` in a few vectorised tensor operations (no per-image loop; the stability suite's
    many tiny runs each build their data in milliseconds).

    Glyphs are scikit-learn's bundled 8x8 handwritten digits (1,797, ``load_digits``); ``test_writers`` of
    them (a seed-drawn subset) are only used for the test split, so test digits are unseen glyphs. Each
    image: one digit (rotated +-15 degrees, ``digit_size`` px, random place) over ``clutter`` distractor
    fragments (a random 4-7 px window of another rotated digit at 0.8 intensity) and Gaussian pixel noise
    of std ``noise``, clipped to [0, 1], then normalised by the training split's mean and std.
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = torch.from_numpy(d.images / 16.0).float()
    labels = torch.from_numpy(d.target).long()
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(len(imgs), generator=g)
    lo, hi = int(digit_size[0]), int(digit_size[1])
    if not (1 <= lo <= hi <= canvas):
        raise ValueError(f"data.digit_size must be 1 <= low <= high <= {canvas}, got {list(digit_size)}")

    def u(n: int, a: float, b: float) -> torch.Tensor:
        return a + (b - a) * torch.rand(n, generator=g)

    def draw(n: int, pool: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pick = pool[torch.randint(len(pool), (n,), generator=g)]
        size = torch.randint(lo, hi + 1, (n,), generator=g).float()
        top, left = u(n, 0, 1) * (canvas - size), u(n, 0, 1) * (canvas - size)
        x = place_glyphs(imgs[pick], canvas, size, top, left, u(n, -0.26, 0.26))
        rows = torch.arange(canvas).view(1, canvas, 1)
        cols = torch.arange(canvas).view(1, 1, canvas)
        for _ in range(clutter):
            other = pool[torch.randint(len(pool), (n,), generator=g)]
            fsize = torch.randint(lo, hi + 1, (n,), generator=g).float()
            ftop, fleft = u(n, 0, 1) * (canvas - fsize), u(n, 0, 1) * (canvas - fsize)
            frag = place_glyphs(imgs[other], canvas, fsize, ftop, fleft, u(n, -0.26, 0.26))
            wh = torch.randint(4, 8, (2, n), generator=g)
            y0 = (ftop + u(n, 0, 1) * (fsize - wh[0]).clamp_min(0)).long().view(n, 1, 1)
            x0 = (fleft + u(n, 0, 1) * (fsize - wh[1]).clamp_min(0)).long().view(n, 1, 1)
            window = ((rows >= y0) & (rows < y0 + wh[0].view(n, 1, 1)) & (cols >= x0)
                      & (cols < x0 + wh[1].view(n, 1, 1)))
            x = torch.maximum(x, 0.8 * frag * window)
        x = (x + noise * torch.randn(x.shape, generator=g)).clamp(0, 1)
        return x[:, None], labels[pick]

    xtr, ytr = draw(n_train, perm[test_writers:])
    xte, yte = draw(n_test, perm[:test_writers])
    mean, std = xtr.mean(), xtr.std()
    return TensorDataset((xtr - mean) / std, ytr), TensorDataset((xte - mean) / std, yte)


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
    if cfg.dataset == "micro_digits":
        return micro_digits(cfg.n_train, cfg.n_test, seed, canvas=img_size, clutter=cfg.clutter, noise=cfg.noise,
                            digit_size=tuple(cfg.digit_size))
    raise ValueError(f"data.dataset must be imagenet1k | cluttered_digits | micro_digits, got '{cfg.dataset}'")
