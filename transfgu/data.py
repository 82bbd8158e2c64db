"""TransFGU data: the embedded textured scenes, and the real PASCAL VOC 2012 / Cityscapes layouts.

* :func:`textured_scenes` -- spec section 9: RGB scenes of 3 "stuff" textures (background regions) and 4 "thing"
  textures (1-3 ellipses / polygons), colours jittered per region so that texture, not colour, decides the
  class; per-pixel ground truth. Generated in-process from a seed (no download, no cache needed: ~1 s).
* :class:`VOCSegmentation` -- ``<root>/{JPEGImages,SegmentationClass,ImageSets/Segmentation/{train,val}.txt}``,
  255 -> ignore (-1), 21 classes with background = 0; images and labels squashed to ``size`` (official eval).
* verify entries ``transfgu.voc2012`` and ``transfgu.cityscapes`` (``python -m shared.data.verify NAME ROOT``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from shared.data.verify import register

STUFF = ("gradient", "streaks", "planks")
THINGS = ("stripes", "checker", "dots", "rings")
CLASS_NAMES = STUFF + THINGS
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------- embedded scenes
def _texture(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """``(size, size, 3)`` float32 in [0, 1]: one texture with a random colour pair, scale and phase."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    period = rng.uniform(5, 9) * size / 96
    a, b = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    if kind == "gradient":  # noisy vertical gradient
        t = y / size + rng.normal(0, 0.08, (size, size))
    elif kind == "streaks":  # vertical streak noise, greenish
        t = np.repeat(rng.uniform(0, 1, (1, size)), size, 0) + rng.normal(0, 0.1, (size, size))
        t = cv2.blur(t.astype(np.float32), (1, 9))
        b = np.clip(b * np.array([0.4, 1.0, 0.4]) + np.array([0, 0.3, 0]), 0, 1)
    elif kind == "planks":  # horizontal planks with grain, brownish
        rows = (y / (2 * period) + rng.uniform(0, 1)).astype(int)
        t = rng.uniform(0, 1, rows.max() + 2)[rows] * 0.7 + 0.3 * np.sin(x / 1.5 + rows) ** 2
        b = np.clip(b * 0.5 + np.array([0.4, 0.25, 0.1]), 0, 1)
    elif kind == "stripes":
        t = (np.sin((x + y) * np.pi / period + rng.uniform(0, 6.3)) > 0).astype(np.float32)
    elif kind == "checker":
        t = ((np.sin(x * np.pi / period + rng.uniform(0, 6.3)) * np.sin(y * np.pi / period)) > 0).astype(np.float32)
    elif kind == "dots":
        cy, cx = (y % (2 * period)) - period, (x % (2 * period)) - period
        t = (cy ** 2 + cx ** 2 < (0.5 * period) ** 2).astype(np.float32)
    elif kind == "rings":
        r = np.hypot(y - rng.uniform(0, size), x - rng.uniform(0, size))
        t = (np.sin(r * np.pi / period) > 0).astype(np.float32)
    else:
        raise ValueError(kind)
    t = np.clip(t, 0, 1)[..., None]
    return (a * (1 - t) + b * t).astype(np.float32)


def _shape_mask(size: int, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    d = rng.uniform(lo, hi)
    cy, cx = rng.uniform(d / 2, size - d / 2, 2)
    if rng.random() < 0.5:
        cv2.ellipse(m, (int(cx), int(cy)), (int(d / 2), int(d / 2 * rng.uniform(0.6, 1))), rng.uniform(0, 180),
                    0, 360, 1, -1)
    else:
        n = int(rng.integers(3, 7))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = d / 2 * rng.uniform(0.7, 1, n)
        pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1).astype(np.int32)
        cv2.fillPoly(m, [pts], 1)
    return m.astype(bool)


def render_scene(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One scene: ``(image (size, size, 3) float32 in [0, 1], label (size, size) int64 in [0, 7))``.

    Background: one or two stuff classes split by a random wavy horizon; then 1-3 things of 16-40 px (at 96 px).
    """
    s1, s2 = rng.choice(len(STUFF), 2, replace=rng.random() < 0.4)
    y, x = np.mgrid[0:size, 0:size]
    horizon = size * rng.uniform(0.3, 0.7) + size * 0.08 * np.sin(x * rng.uniform(0.02, 0.1) + rng.uniform(0, 6))
    label = np.where(y < horizon, s1, s2).astype(np.int64)
    img = np.where((label == s1)[..., None], _texture(STUFF[s1], size, rng), _texture(STUFF[s2], size, rng))
    for _ in range(int(rng.integers(1, 4))):
        c = int(rng.integers(len(THINGS)))
        m = _shape_mask(size, rng, 16 * size / 96, 40 * size / 96)
        img[m] = _texture(THINGS[c], size, rng)[m]
        label[m] = len(STUFF) + c
    img = np.clip(img + rng.normal(0, 0.03, img.shape), 0, 1).astype(np.float32)
    return img, label


@dataclass
class Scenes:
    """Images ``(N, 3, S, S)`` ImageNet-normalised float32 and labels ``(N, S, S)`` int64."""

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int = len(CLASS_NAMES)
    n_things: int = len(THINGS)
    n_stuff: int = len(STUFF)

    def __len__(self) -> int:
        return len(self.images)


def normalise(img: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``(N, S, S, 3)`` in [0, 1] -> ``(N, 3, S, S)`` ImageNet-normalised."""
    t = torch.as_tensor(img).permute(0, 3, 1, 2).float()
    return (t - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def textured_scenes(n: int, seed: int, size: int = 96) -> Scenes:
    """``n`` scenes from ``seed`` (deterministic)."""
    rng = np.random.default_rng(seed)
    imgs, labels = zip(*(render_scene(size, rng) for _ in range(n)))
    return Scenes(normalise(np.stack(imgs)), torch.from_numpy(np.stack(labels)))


# ----------------------------------------------------------------------------- real data
class VOCSegmentation(Dataset):
    """PASCAL VOC 2012 segmentation: ``(image (3, S, S) normalised, label (S, S) int64, -1 = ignore)``.

    Official TransFGU squashes both to ``size`` x ``size`` (bilinear image, nearest label); no crop.
    """

    def __init__(self, root: str | Path, split: str = "val", size: int = 320):
        self.root, self.size = Path(root), size
        lst = self.root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not lst.is_file():
            raise FileNotFoundError(f"{lst}: split list not found (expected VOC2012 layout, see transfgu/README.md)")
        self.ids = [ln.strip() for ln in lst.read_text().splitlines() if ln.strip()]
        if not self.ids:
            raise ValueError(f"{lst}: empty split list")

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        from PIL import Image

        jpg = self.root / "JPEGImages" / f"{self.ids[i]}.jpg"
        png = self.root / "SegmentationClass" / f"{self.ids[i]}.png"
        for path in (jpg, png):
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing (listed in {self.ids[i]!r} of the split file)")
        try:
            img = np.asarray(Image.open(jpg).convert("RGB"), np.float32) / 255.0
        except OSError as e:
            raise ValueError(f"{jpg}: unreadable image ({e})") from None
        try:
            lab = np.asarray(Image.open(png), np.int64)
        except OSError as e:
            raise ValueError(f"{png}: unreadable label ({e})") from None
        if lab.ndim != 2:
            raise ValueError(f"{png}: expected a palette/grey label PNG, got shape {lab.shape}")
        img = cv2.resize(img, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        lab = cv2.resize(lab.astype(np.uint8), (self.size, self.size), interpolation=cv2.INTER_NEAREST).astype(np.int64)
        lab[lab == 255] = -1
        if lab.max() > 20:
            raise ValueError(f"{png}: label value {lab.max()} outside 0..20 / 255")
        return normalise(img[None])[0], torch.from_numpy(lab)


@register("transfgu.voc2012", paper="transfgu",
          doc="<root>/{JPEGImages/*.jpg, SegmentationClass/*.png, ImageSets/Segmentation/{train,val}.txt}")
def verify_voc2012(root: Path) -> list[str]:
    root = Path(root)
    problems = []
    for split in ("train", "val"):
        lst = root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not lst.is_file():
            problems.append(f"{lst}: missing")
            continue
        for n, line in enumerate(lst.read_text().splitlines(), 1):
            name = line.strip()
            if not name:
                continue
            if " " in name:
                problems.append(f"{lst}:{n}: expected one image id per line, got {line!r}")
                continue
            for p in (root / "JPEGImages" / f"{name}.jpg", root / "SegmentationClass" / f"{name}.png"):
                if not p.is_file():
                    problems.append(f"{lst}:{n}: {p} missing")
    return problems


@register("transfgu.cityscapes", paper="transfgu",
          doc="<root>/leftImg8bit/{train,val}/<city>/*_leftImg8bit.png + gtFine/.../*_gtFine_labelIds.png")
def verify_cityscapes(root: Path) -> list[str]:
    root = Path(root)
    problems = []
    for split in ("train", "val"):
        imgs = sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))
        if not imgs:
            problems.append(f"{root / 'leftImg8bit' / split}: no <city>/*_leftImg8bit.png images")
        for p in imgs:
            gt = root / "gtFine" / split / p.parent.name / p.name.replace("_leftImg8bit.png", "_gtFine_labelIds.png")
            if not gt.is_file():
                problems.append(f"{p}: label {gt} missing")
    return problems


def cityscapes_label_map(label_ids: np.ndarray) -> np.ndarray:
    """Cityscapes labelIds -> the 27-class protocol: ids 7..33 -> 0..26, ids 0..6 -> -1 (ignored)."""
    out = label_ids.astype(np.int64) - 7
    out[(label_ids < 7) | (label_ids > 33)] = -1
    return out
