"""Embedded digit data, generated here, deterministic for a seed, cached on disk.

* :func:`digit_domains` -- a UDA pair. Source: digits 0-9 rendered from the TrueType fonts matplotlib
  ships (DejaVu, STIX, Computer Modern) with random affine, stroke width and blur, area-resized to 8x8
  and quantised to 0..16. Target: scikit-learn's bundled handwritten digits (``load_digits``, 1,797
  images, 8x8, 0..16). Both are normalised with one global mean/std. A classifier trained on the
  source reaches only about half the target accuracy it reaches in-domain, so adaptation has room.
* :func:`cluttered_digits` -- a rendered digit at a random place on a 32x32 canvas among clutter
  (fragments of other digits, noise), fixed train/test split, with the digit's pixel mask, for the
  ViT-variant papers.
* :func:`paste_digit` and :func:`split_draw` -- the pieces such a generator is made of (a rendered digit
  pasted at a random place with its mask; the cached train/test draw normalised by the training split),
  shared with ``knn_attention.data.distractor_digits``.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

_FONT_NAMES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "cmr10.ttf", "cmss10.ttf",
    "cmtt10.ttf", "cmb10.ttf",
)
_GEN_VERSION = 2  # bump when generation changes, so stale caches are not reused


def cache_dir() -> Path:
    """``$VISIONREPRO_CACHE`` or ``<repo>/.cache`` (git-ignored)."""
    root = os.environ.get("VISIONREPRO_CACHE") or Path(__file__).resolve().parents[2] / ".cache"
    p = Path(root)
    p.mkdir(parents=True, exist_ok=True)
    return p


def font_paths() -> list[Path]:
    """TrueType fonts shipped by matplotlib (always installed with this project)."""
    import matplotlib

    d = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    paths = [d / n for n in _FONT_NAMES if (d / n).is_file()]
    if not paths:
        raise FileNotFoundError(f"{d}: no TrueType fonts found to render digits")
    return paths


def _glyph_bank(size: int = 28, canvas: int = 32) -> np.ndarray:
    """(F, 10, canvas, canvas) float32 in [0, 1]: each digit of each font, centred."""
    from PIL import Image, ImageDraw, ImageFont

    bank = []
    for path in font_paths():
        font = ImageFont.truetype(str(path), size)
        row = []
        for d in range(10):
            img = Image.new("L", (canvas * 2, canvas * 2), 0)
            draw = ImageDraw.Draw(img)
            draw.text((canvas, canvas), str(d), fill=255, font=font, anchor="mm")
            a = np.asarray(img, dtype=np.float32) / 255.0
            ys, xs = np.nonzero(a > 0.05)
            a = a[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
            h, w = a.shape
            s = (canvas - 8) / max(h, w)  # fit the glyph in the canvas with a margin
            a = cv2.resize(a, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
            out = np.zeros((canvas, canvas), np.float32)
            y0, x0 = (canvas - a.shape[0]) // 2, (canvas - a.shape[1]) // 2
            out[y0:y0 + a.shape[0], x0:x0 + a.shape[1]] = a
            row.append(out)
        bank.append(row)
    return np.asarray(bank, dtype=np.float32)


def _random_affine(img: np.ndarray, rng: np.random.Generator, rot: float, scale: tuple[float, float],
                   shift: float, shear: float = 0.0) -> np.ndarray:
    h, w = img.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-rot, rot), rng.uniform(*scale))
    m[0, 1] += rng.uniform(-shear, shear)
    m[:, 2] += rng.uniform(-shift, shift, size=2)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0.0)


def render_digits(n: int, seed: int, canvas: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rendered digits, (n, canvas, canvas) float32 in [0, 1] and labels (n,) int64."""
    rng = np.random.default_rng(seed)
    bank = _glyph_bank(canvas=canvas)
    labels = rng.integers(0, 10, size=n)
    fonts = rng.integers(0, bank.shape[0], size=n)
    out = np.empty((n, canvas, canvas), np.float32)
    kernel = np.ones((3, 3), np.uint8)
    for i in range(n):
        a = _random_affine(bank[fonts[i], labels[i]], rng, rot=15, scale=(0.8, 1.2), shift=2, shear=0.15)
        r = rng.random()
        if r < 0.5:  # stroke width: thicken (MaxFilter) or thin
            a = cv2.dilate(a, kernel)
        elif r < 0.65:
            a = cv2.erode(a, kernel)
        if rng.random() < 0.7:
            a = cv2.GaussianBlur(a, (3, 3), rng.uniform(0.3, 1.0))
        out[i] = np.clip(a, 0, 1)
    return out, labels.astype(np.int64)


def _cached(name: str, params: dict, build) -> dict[str, np.ndarray]:
    key = hashlib.sha1(json.dumps({**params, "v": _GEN_VERSION}, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir() / f"{name}_{key}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError):
            path.unlink(missing_ok=True)  # a broken cache file is rebuilt, never trusted
    arrays = build()
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    return arrays


def fit_glyph(glyph: np.ndarray, size: int) -> np.ndarray:
    """``glyph`` area-resized to ``size`` x ``size`` px and rescaled to peak 1 (thin, eroded strokes stay fully
    visible after resizing)."""
    d = cv2.resize(glyph, (size, size), interpolation=cv2.INTER_AREA)
    return d / max(float(d.max()), 1e-6)


def paste_digit(canvas: np.ndarray, mask: np.ndarray, glyph: np.ndarray, size: int,
                rng: np.random.Generator) -> None:
    """Paste ``glyph`` (a rendered digit) fitted to ``size`` px (:func:`fit_glyph`) at a random place on the square
    ``canvas`` (S, S), by pixel-wise max, in place; ``mask`` (S, S) gets its digit pixels (> 0.2) in that box.
    Draws the place (top, left) from ``rng`` in one call of two (two calls of one would draw other numbers)."""
    d = fit_glyph(glyph, size)
    if canvas.shape[0] != canvas.shape[1]:
        raise ValueError(f"paste_digit: the canvas must be square, got {canvas.shape}")
    py, px = rng.integers(0, canvas.shape[0] - size + 1, size=2)
    canvas[py:py + size, px:px + size] = np.maximum(canvas[py:py + size, px:px + size], d)
    mask[py:py + size, px:px + size] = d > 0.2


def split_draw(name: str, params: dict, make, n_train: int, n_test: int, seed: int) -> dict[str, np.ndarray]:
    """A generator's train/test draw: ``make(n, stream_seed)`` -> ``{"x": (n, H, W), "y", "mask"}`` for the train
    split (stream ``seed``) and the test split (stream ``seed + 100_003``), cached on disk under ``name`` and
    ``params``. Returns ``{train,test}_{x,y,mask}`` with ``x`` as (n, 1, H, W) float32 normalised by the
    training split's mean and std."""
    a = _cached(name, params, lambda: {
        **{f"train_{k}": v for k, v in make(n_train, seed).items()},
        **{f"test_{k}": v for k, v in make(n_test, seed + 100_003).items()},
    })
    mean, std = float(a["train_x"].mean()), float(a["train_x"].std())
    out = dict(a)
    for split in ("train", "test"):
        out[f"{split}_x"] = ((a[f"{split}_x"] - mean) / std)[:, None].astype(np.float32)
    return out


@dataclass
class DigitDomains:
    """Source (rendered) and target (handwritten) digits, (N, 1, 8, 8) float32, normalised."""

    source_x: np.ndarray
    source_y: np.ndarray
    target_x: np.ndarray
    target_y: np.ndarray
    mean: float
    std: float
    num_classes: int = 10


def target_subset(seed: int, n_pool: int, n_target: int) -> np.ndarray:
    """Sorted indices of the ``n_target`` handwritten digits (of ``n_pool``) in draw ``seed``; all of them when
    ``n_target`` is 0 or at least ``n_pool``. Its own stream (``[seed, 1]``), apart from the source rendering."""
    if n_target < 0:
        raise ValueError(f"data.n_target must be >= 0, got {n_target}")
    if n_target == 0 or n_target >= n_pool:
        return np.arange(n_pool)
    return np.sort(np.random.default_rng([seed, 1]).choice(n_pool, n_target, replace=False))


def digit_domains(seed: int = 0, n_source: int = 3000, n_target: int = 0) -> DigitDomains:
    """Rendered-font digits (source) -> scikit-learn handwritten digits (target), both 8x8, both drawn from
    ``seed``: the source is rendered from it, the target is the seed's :func:`target_subset` of ``n_target`` of
    the 1,797 handwritten digits (0: all of them). The normalisation uses the full pools, so a subset changes
    which images a run sees, not their values."""

    def build() -> dict[str, np.ndarray]:
        from sklearn.datasets import load_digits

        imgs, ys = render_digits(n_source, seed)
        # Area-resize 32 -> 8 and quantise to 0..16 exactly like load_digits' 4x4-block counts.
        src = np.stack([cv2.resize(a, (8, 8), interpolation=cv2.INTER_AREA) for a in imgs])
        src = np.round(src / max(src.max(), 1e-6) * 16.0 * 1.15).clip(0, 16)
        d = load_digits()
        return {"source_x": src.astype(np.float32), "source_y": ys,
                "target_x": d.images.astype(np.float32), "target_y": d.target.astype(np.int64)}

    a = _cached("digit_domains", {"seed": seed, "n_source": n_source}, build)
    both = np.concatenate([a["source_x"].ravel(), a["target_x"].ravel()])
    mean, std = float(both.mean()), float(both.std())
    norm = lambda x: ((x - mean) / std)[:, None].astype(np.float32)  # noqa: E731
    keep = target_subset(seed, len(a["target_y"]), n_target)
    return DigitDomains(norm(a["source_x"]), a["source_y"], norm(a["target_x"][keep]), a["target_y"][keep], mean, std)


@dataclass
class ClutteredDigits:
    """(N, 1, 32, 32) float32 images (normalised), labels, and (N, 32, 32) bool digit masks."""

    train_x: np.ndarray
    train_y: np.ndarray
    train_mask: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    test_mask: np.ndarray
    num_classes: int = 10

    def tensor_datasets(self):
        """``(train, test)`` ``TensorDataset``s of ``(image (1, 32, 32), label)``."""
        import torch
        from torch.utils.data import TensorDataset

        return (TensorDataset(torch.from_numpy(self.train_x), torch.from_numpy(self.train_y)),
                TensorDataset(torch.from_numpy(self.test_x), torch.from_numpy(self.test_y)))


def cluttered_digits(n_train: int = 6000, n_test: int = 1000, seed: int = 0, clutter: int = 4,
                     noise: float = 0.15) -> ClutteredDigits:
    """A 14-20 px digit at a random place on a 32x32 canvas among ``clutter`` fragments of other
    digits and Gaussian noise. The split is fixed by ``seed`` (test drawn from a separate stream)."""

    def make(n: int, s: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(s)
        glyphs, labels = render_digits(n * (1 + clutter), s + 7919)
        x = np.zeros((n, 32, 32), np.float32)
        mask = np.zeros((n, 32, 32), bool)
        for i in range(n):
            canvas = x[i]
            for j in range(clutter):  # fragments: a random 6-11 px crop of another digit
                g = glyphs[n + i * clutter + j]
                fh, fw = rng.integers(6, 12, size=2)
                gy, gx = rng.integers(4, 32 - fh - 3), rng.integers(4, 32 - fw - 3)
                frag = g[gy:gy + fh, gx:gx + fw]
                py, px = rng.integers(0, 32 - fh + 1), rng.integers(0, 32 - fw + 1)
                canvas[py:py + fh, px:px + fw] = np.maximum(canvas[py:py + fh, px:px + fw], frag * 0.8)
            paste_digit(canvas, mask[i], glyphs[i], int(rng.integers(14, 21)), rng)
        x = np.clip(x + rng.normal(0, noise, x.shape).astype(np.float32), 0, 1)
        return {"x": x, "y": labels[:n], "mask": mask}

    params = {"n_train": n_train, "n_test": n_test, "seed": seed, "clutter": clutter, "noise": noise}
    a = split_draw("cluttered_digits", params, make, n_train, n_test, seed)
    return ClutteredDigits(a["train_x"], a["train_y"], a["train_mask"], a["test_x"], a["test_y"], a["test_mask"])
