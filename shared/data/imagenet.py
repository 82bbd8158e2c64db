"""ImageNet-1k as torchvision ``ImageFolder`` trees with timm's (DeiT-recipe) transforms; ``verify``.

Layout (DeiT's ``--data-path``; the validation images must be regrouped into class folders)::

    <root>/train/<wnid>/*.JPEG     1000 class folders, 1,281,167 images
    <root>/val/<wnid>/*.JPEG       1000 class folders, 50 images each (50,000)

``python -m shared.data.verify imagenet <root>`` checks it. Used by every paper trained with the DeiT
ImageNet recipe (knn_attention, scaled_relu_stem, elsa).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .registry import register

IMAGENET_CLASSES = 1000
IMAGENET_TRAIN = 1_281_167
IMAGENET_VAL = 50_000
IMG_EXT = (".jpeg", ".jpg", ".png")


def imagenet_problems(root: str | Path, classes: int | None = IMAGENET_CLASSES,
                      count_images: bool = True) -> list[str]:
    """Problems with an ImageNet-style ``{train,val}/<class>/*`` tree; ``[]`` when it is complete.

    Checks both splits exist with ``classes`` class folders and the same class names, that no images lie
    loose in a split folder (an un-regrouped val set), and, with ``count_images``, the documented counts.
    """
    root = Path(root)
    problems: list[str] = []
    names: dict[str, list[str]] = {}
    for split, expected in (("train", IMAGENET_TRAIN), ("val", IMAGENET_VAL)):
        d = root / split
        if not d.is_dir():
            problems.append(f"{d}: missing folder (expected {split}/<wnid>/*.JPEG)")
            continue
        dirs = sorted(p for p in d.iterdir() if p.is_dir())
        names[split] = [p.name for p in dirs]
        if classes is not None and len(dirs) != classes:
            problems.append(f"{d}: expected {classes} class folders, found {len(dirs)}")
        loose = [p.name for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMG_EXT]
        if loose:
            problems.append(f"{d}: {len(loose)} images directly in {split}/ (e.g. {loose[0]}); "
                            "regroup them into class folders")
        if count_images and classes == IMAGENET_CLASSES:
            n = sum(1 for c in dirs for f in c.iterdir() if f.suffix.lower() in IMG_EXT)
            if n != expected:
                problems.append(f"{d}: expected {expected} images, found {n}")
    if len(names) == 2 and names["train"] != names["val"]:
        only = sorted(set(names["train"]) ^ set(names["val"]))[:5]
        problems.append(f"{root}: train and val class folders differ (e.g. {', '.join(only)})")
    return problems


@register("imagenet", paper="shared", doc="<root>/{train,val}/<wnid>/*.JPEG (1000 classes; 1,281,167 / 50,000)")
def verify_imagenet(root: Path) -> list[str]:
    return imagenet_problems(root)


@dataclass
class ImageNetAugment:
    """timm ``create_transform`` settings of the DeiT recipe (each paper's config may change them)."""

    auto_augment: str = "rand-m9-mstd0.5-inc1"
    color_jitter: float = 0.4
    reprob: float = 0.25
    remode: str = "pixel"
    train_interpolation: str = "bicubic"
    eval_interpolation: str = "bicubic"
    eval_crop_pct: float = 0.875


def imagenet_datasets(root: str | Path, img_size: int = 224, aug: ImageNetAugment | None = None,
                      classes: int | None = IMAGENET_CLASSES):
    """(train, val) ``ImageFolder`` datasets; a malformed tree raises naming the folder and the problem."""
    from timm.data import create_transform
    from torchvision.datasets import ImageFolder

    aug = aug or ImageNetAugment()
    problems = imagenet_problems(root, classes, count_images=False)
    if problems:
        raise FileNotFoundError("; ".join(problems[:3]))
    train_tf = create_transform(img_size, is_training=True, auto_augment=aug.auto_augment or None,
                                color_jitter=aug.color_jitter, re_prob=aug.reprob, re_mode=aug.remode,
                                re_count=1, interpolation=aug.train_interpolation)
    val_tf = create_transform(img_size, is_training=False, interpolation=aug.eval_interpolation,
                              crop_pct=aug.eval_crop_pct)
    root = Path(root)
    return ImageFolder(root / "train", train_tf), ImageFolder(root / "val", val_tf)
