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

from shared.data.digits import cluttered_digits, fit_glyph, paste_digit, render_digits, split_draw
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
                 clutter: int = 4, noise: float = 0.15, generator: str = "cluttered_digits", digit_px: int = 14,
                 distractor_gain: tuple[float, float] = (0.4, 0.7)):
        if generator == "distractor_digits":  # the k-NN miniature (this folder)
            a = distractor_digits(n_train=n_train, n_test=n_test, seed=seed, distractors=clutter, noise=noise,
                                  digit_px=digit_px, frag_gain=distractor_gain)
            train_x, train_y, test_x, test_y, test_mask = (a["train_x"], a["train_y"], a["test_x"], a["test_y"],
                                                           a["test_mask"])
        else:
            d = cluttered_digits(n_train=n_train, n_test=n_test, seed=seed, clutter=clutter, noise=noise)
            train_x, train_y, test_x, test_y, test_mask = d.train_x, d.train_y, d.test_x, d.test_y, d.test_mask
        self.train = TensorDataset(torch.from_numpy(train_x), torch.from_numpy(train_y))
        self.test_x, self.test_y = torch.from_numpy(test_x), torch.from_numpy(test_y)
        m = test_mask.astype(np.float32)
        n, h, w = m.shape
        g = h // patch
        cells = m[:, : g * patch, : g * patch].reshape(n, g, patch, g, patch).mean(axis=(2, 4))
        self.test_patch_digit = torch.from_numpy(cells.reshape(n, g * g))
        self.num_classes = 10


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


# ----------------------------------------------------------------------------- k-NN miniature (64 tokens)
def distractor_digits(n_train: int = 4000, n_test: int = 1000, seed: int = 0, digit_px: int = 14,
                      distractors: int = 6, frag_px: tuple[int, int] = (5, 9),
                      frag_gain: tuple[float, float] = (0.4, 0.7), noise: float = 0.2,
                      occluders: int = 1) -> dict[str, np.ndarray]:
    """The embedded data of the k-NN miniature: a small digit among many irrelevant tokens.

    32x32 canvas (with ``patch 4``: 8x8 = 64 patch tokens). One rendered digit (the evidence), resized to
    ``digit_px`` px at a random place, covers 9-16 of the 64 patches (about 3/4 of the tokens hold no evidence);
    the rest hold only irrelevant content: ``distractors`` fragments (random ``frag_px`` crops of other digits,
    gain ``frag_gain``), ``occluders`` random dark bars that may also cut through the digit, and Gaussian pixel noise
    ``noise`` everywhere. Every draw follows ``seed`` (train from ``seed``, test from a separate stream).
    Returns float32 ``{train,test}_x`` (n, 1, 32, 32) normalised, int64 ``_y``, bool ``_mask`` (n, 32, 32)
    digit pixels.
    """
    def make(n: int, s: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(s)
        glyphs, labels = render_digits(n, s + 7919)
        x = np.zeros((n, 32, 32), np.float32)
        mask = np.zeros((n, 32, 32), bool)
        for i in range(n):
            c = x[i]
            for _ in range(distractors):
                g = glyphs[int(rng.integers(0, n))]  # a fragment of another image's digit
                fh, fw = rng.integers(frag_px[0], frag_px[1] + 1, size=2)
                small = fit_glyph(g, digit_px)
                gy, gx = rng.integers(0, digit_px - fh + 1), rng.integers(0, digit_px - fw + 1)
                frag = small[gy:gy + fh, gx:gx + fw] * rng.uniform(*frag_gain)
                py, px = rng.integers(0, 32 - fh + 1), rng.integers(0, 32 - fw + 1)
                c[py:py + fh, px:px + fw] = np.maximum(c[py:py + fh, px:px + fw], frag)
            paste_digit(c, mask[i], glyphs[i], digit_px, rng)
            for _ in range(occluders):  # thin dark bars: occlusion of whatever lies below
                if rng.random() < 0.5:
                    y0, w = int(rng.integers(0, 31)), int(rng.integers(1, 3))
                    c[y0:y0 + w, :] = 0.0
                    mask[i, y0:y0 + w, :] = False
                else:
                    x0, w = int(rng.integers(0, 31)), int(rng.integers(1, 3))
                    c[:, x0:x0 + w] = 0.0
                    mask[i, :, x0:x0 + w] = False
        x = x + rng.normal(0, noise, x.shape).astype(np.float32)
        return {"x": x, "y": labels[:n].astype(np.int64), "mask": mask}

    params = {"n_train": n_train, "n_test": n_test, "seed": seed, "digit_px": digit_px, "distractors": distractors,
              "frag_px": list(frag_px), "frag_gain": list(frag_gain), "noise": noise, "occluders": occluders}
    return split_draw("knn_distractor_digits", params, make, n_train, n_test, seed)
