"""TransFGU data: the embedded textured scenes, and the real PASCAL VOC 2012 / Cityscapes layouts.

* :func:`textured_scenes` -- spec section 9: RGB scenes of 3 "stuff" textures (background regions) and 4 "thing"
  textures (1-3 ellipses / polygons), colours jittered per region so that texture, not colour, decides the
  class; per-pixel ground truth. Generated in-process from a seed (no download, no cache needed: ~1 s).
* :class:`VOCSegmentation` -- ``<root>/{JPEGImages,SegmentationClass,ImageSets/Segmentation/{train,val}.txt}``,
  255 -> ignore (-1), 21 classes with background = 0; images and labels squashed to ``size`` (official eval).
* :class:`COCOStuff` (27 / 171 / COCO-80), :class:`Cityscapes` (27), :class:`LIP` (5 / 16 / 19): the official
  ``<ds>_trainval.py`` datasets, label maps as lookup tables (a value outside the map is an error naming the file).
* :func:`build_dataset` -- one entry for train / generate / evaluate; :func:`input_size` -- the per-dataset
  ``(H, W)`` of spec section 5 (COCO / VOC R x R, Cityscapes R x 2R, LIP 2R x R).
* verify entries ``transfgu.voc2012``, ``transfgu.cocostuff``, ``transfgu.cityscapes``, ``transfgu.lip``
  (``python -m shared.data.verify NAME ROOT``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from shared.data.registry import register

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


# ----------------------------------------------------------------------------- label maps (official dataloaders/*)
INVALID = -2  # a lookup-table entry for a value the official dict has no key for (it raises KeyError there)

# COCO-Stuff stuffthingmaps: value = COCO category id - 1 (0..181), 255 = unlabeled. Things are 0..90, stuff
# 91..181. These 11 thing ids have no annotations in COCO and are absent from the 171-class and COCO-80 maps.
COCO_UNUSED_THING_IDS = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)
# PiCIE's fine -> coarse map (official ``coco_stuff_id_idx_map_coarse``): things 0..11, stuff 12..26.
_COARSE_THINGS = {9: [0], 11: range(1, 9), 8: range(9, 15), 7: range(15, 25), 6: range(25, 33),
                  10: range(33, 43), 5: range(43, 51), 2: range(51, 61), 3: range(61, 71), 0: range(71, 77),
                  1: range(77, 83), 4: range(83, 91)}
_COARSE_STUFF = (  # fine ids 91..181 in order
    17, 17, 22, 20, 20, 22, 15, 25, 16, 13, 12, 12, 17, 17, 23, 15, 15, 17, 15, 21, 15, 25, 13, 13, 13, 13, 13,
    22, 26, 14, 14, 15, 22, 21, 21, 24, 20, 22, 15, 17, 16, 15, 22, 24, 21, 17, 25, 16, 21, 17, 22, 16, 21, 21,
    25, 21, 26, 21, 24, 20, 17, 14, 21, 26, 15, 23, 20, 21, 24, 15, 24, 22, 25, 15, 20, 17, 17, 22, 14, 18, 18,
    18, 18, 18, 18, 18, 26, 26, 19, 19, 24)
COCO_THING_NAMES_27 = ("electronic", "kitchen", "food", "furniture", "indoor", "appliance", "sports", "animal",
                       "outdoor", "person", "accessory", "vehicle")


def _lut(pairs: dict[int, int], ignore: tuple[int, ...] = ()) -> np.ndarray:
    lut = np.full(256, INVALID, np.int64)
    for k, v in pairs.items():
        lut[k] = v
    lut[list(ignore)] = -1
    return lut


def coco_lut(classes: int) -> np.ndarray:
    """stuffthingmap value -> class index for COCO-Stuff-27 / -171 or COCO-80 (255 -> -1 ignored).

    27: PiCIE coarse map; 171: the used fine ids in order (things 0..79, stuff 80..170); 80: things 1..80 in
    order, every stuff id -> 0 (background), as ``coco_id_idx_map``.
    """
    used = [i for i in range(91) if i not in COCO_UNUSED_THING_IDS]
    if classes == 27:
        pairs = {f: c for c, fs in _COARSE_THINGS.items() for f in fs}
        pairs.update({91 + i: c for i, c in enumerate(_COARSE_STUFF)})
    elif classes == 171:
        pairs = {f: i for i, f in enumerate(used + list(range(91, 182)))}
    elif classes == 80:
        pairs = {f: i + 1 for i, f in enumerate(used)} | {f: 0 for f in range(91, 182)}
    else:
        raise ValueError(f"COCO class set {classes}: expected 27, 171 or 80")
    return _lut(pairs, ignore=(255,))


# LIP raw labels: 0 bg, 1 hat, 2 hair, 3 glove, 4 sunglasses, 5 upper-clothes, 6 dress, 7 coat, 8 socks, 9 pants,
# 10 jumpsuits, 11 scarf, 12 skirt, 13 face, 14/15 left/right arm, 16/17 left/right leg, 18/19 left/right shoe.
LIP_GROUPS_5 = {1: (1, 2, 4, 13), 2: (5, 6, 7, 10, 11, 12), 3: (3, 14, 15), 4: (9, 16, 17), 5: (8, 18, 19)}


def lip_lut(classes: int) -> np.ndarray:
    """LIP raw label -> class index; background 0 is a class. 19: raw; 16: left/right arm, leg, shoe merged
    (``lip_id_idx_coarse_16_map``); 5: head / clothes / arms / legs / feet (``lip_id_idx_coarse_5_map``).
    255 -> -1 (the official LIP-19 reads labels as int8, so 255 is -1 there)."""
    if classes == 19:
        pairs = {i: i for i in range(20)}
    elif classes == 16:
        pairs = {i: i for i in range(15)} | {15: 14, 16: 15, 17: 15, 18: 16, 19: 16}
    elif classes == 5:
        pairs = {0: 0} | {raw: g for g, raws in LIP_GROUPS_5.items() for raw in raws}
    else:
        raise ValueError(f"LIP class set {classes}: expected 5, 16 or 19")
    return _lut(pairs, ignore=(255,))


def cityscapes_lut() -> np.ndarray:
    """labelIds 0..6 -> -1 (ignored), 7..33 -> 0..26 (``cityscape_id_idx_map``); anything else is an error."""
    return _lut({i: i - 7 for i in range(7, 34)}, ignore=tuple(range(7)))


def input_size(dataset: str, resize: int) -> tuple[int, int]:
    """``(H, W)`` the official code squashes images to: COCO / VOC R x R, Cityscapes R x 2R, LIP 2R x R."""
    shapes = {"voc": (resize, resize), "coco": (resize, resize), "cityscapes": (resize, 2 * resize),
              "lip": (2 * resize, resize)}
    if dataset not in shapes:
        raise ValueError(f"dataset {dataset!r}: expected one of {sorted(shapes)}")
    return shapes[dataset]


# ----------------------------------------------------------------------------- real datasets (COCO, Cityscapes, LIP)
class LabelledImages(Dataset):
    """``(image (3, H, W) ImageNet-normalised, label (H, W) int64, -1 = ignore)`` from ``(id, jpg, png)`` triples.

    As the official ``ResizeTensor``: image bilinear (``F.interpolate``, no antialias), label nearest, both to
    ``size``; no crop. The label is mapped through ``lut`` *before* resizing; a value outside the map, an
    unreadable file or an image / label size mismatch is a one-line error naming the file.
    """

    def __init__(self, items: list[tuple[str, Path, Path]], lut: np.ndarray, size: tuple[int, int]):
        self.items, self.lut, self.size = items, lut, tuple(size)
        self.ids = [i for i, _, _ in items]
        self.image_mode = "bilinear"  # or "nearest" (COCO crop stage)

    def __len__(self) -> int:
        return len(self.items)

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Full-size ``(image (H, W, 3) uint8, mapped label (H, W) int64)``."""
        from PIL import Image

        _, jpg, png = self.items[i]
        for path in (jpg, png):
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing")
        try:
            img = np.array(Image.open(jpg).convert("RGB"))
        except OSError as e:
            raise ValueError(f"{jpg}: unreadable image ({e})") from None
        try:
            raw = np.asarray(Image.open(png))
        except OSError as e:
            raise ValueError(f"{png}: unreadable label ({e})") from None
        if raw.ndim != 2 or raw.dtype != np.uint8:
            raise ValueError(f"{png}: expected a single-channel 8-bit label PNG, got {raw.dtype} {raw.shape}")
        if raw.shape != img.shape[:2]:
            raise ValueError(f"{png}: label size {raw.shape[1]}x{raw.shape[0]} does not match image {jpg.name} "
                             f"{img.shape[1]}x{img.shape[0]}")
        lab = self.lut[raw]
        bad = np.unique(raw[lab == INVALID])
        if len(bad):
            raise ValueError(f"{png}: label value(s) {bad[:5].tolist()} outside the class map")
        return img, lab

    def __getitem__(self, i: int):
        img, lab = self.read(i)
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
        if self.image_mode == "nearest":  # the COCO crop stage resizes with cv2 nearest
            x = torch.from_numpy(cv2.resize(img, self.size[::-1], interpolation=cv2.INTER_NEAREST))
            x = x.permute(2, 0, 1).float() / 255.0
        else:
            x = torch.nn.functional.interpolate(x, self.size, mode="bilinear", align_corners=False)[0] / 255.0
        y = torch.nn.functional.interpolate(torch.from_numpy(lab)[None, None].float(), self.size)[0, 0].long()
        mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
        return (x - mean) / std, y


def read_id_list(path: str | Path) -> list[str]:
    """One id per line (blank lines skipped); an id with spaces is an error naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: id list not found")
    ids = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            if len(line.split()) != 1:
                raise ValueError(f"{path}:{n}: expected one id per line, got {line!r}")
            ids.append(line.strip())
    if not ids:
        raise ValueError(f"{path}: empty id list")
    return ids


def coco_image_ids(ann_file: Path) -> list[dict]:
    """Image records that have at least one instance annotation (``COCO(ann).imgToAnns`` keys), landscape
    images first, then the rest, as the official ``MSCOCO17(orientation=0)``."""
    import contextlib
    import io

    from pycocotools.coco import COCO

    if not ann_file.is_file():
        raise FileNotFoundError(f"{ann_file}: instance annotations not found")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(ann_file))
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{ann_file}: not a COCO instances file ({type(e).__name__}: {e})") from None
    recs = [coco.imgs[i] for i in coco.imgToAnns if i in coco.imgs]
    return [r for r in recs if r["height"] < r["width"]] + [r for r in recs if r["height"] >= r["width"]]


class COCOStuff(LabelledImages):
    """``<root>/images/{train2017,val2017}/*.jpg``, ``<root>/annotations/{train2017,val2017}/*.png``
    (stuffthingmaps), ``<root>/annotations/instances_{train2017,val2017}.json``; ``classes`` 27, 171 or 80.

    ``curated``: optional id list (the IIC/PiCIE ``curated_{train,val}.txt``, file stems one per line);
    when given, only those images (that also have an instance annotation) are kept.
    """

    def __init__(self, root: str | Path, split: str = "val", classes: int = 27, size: tuple[int, int] = (320, 320),
                 curated: str | Path | None = None):
        root, folder = Path(root), {"train": "train2017", "val": "val2017"}[split]
        recs = coco_image_ids(root / "annotations" / f"instances_{folder}.json")
        if curated:
            keep = set(read_id_list(curated))
            recs = [r for r in recs if Path(r["file_name"]).stem in keep]
        if not recs:
            raise ValueError(f"{root / 'annotations' / f'instances_{folder}.json'}: no annotated images"
                             + (f" in {curated}" if curated else ""))
        items = [(Path(r["file_name"]).stem, root / "images" / folder / r["file_name"],
                  root / "annotations" / folder / (Path(r["file_name"]).stem + ".png")) for r in recs]
        super().__init__(items, coco_lut(classes), size)


class Cityscapes(LabelledImages):
    """``<root>/leftImg8bit/<split>/<city>/*_leftImg8bit.png`` + ``gtFine/<split>/<city>/*_gtFine_labelIds.png``,
    27 classes (labelIds 7..33), sorted by city and name."""

    def __init__(self, root: str | Path, split: str = "val", size: tuple[int, int] = (320, 640)):
        root = Path(root)
        imgs = sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))
        if not imgs:
            raise FileNotFoundError(f"{root / 'leftImg8bit' / split}: no <city>/*_leftImg8bit.png images")
        items = []
        for p in imgs:
            stem = p.name[: -len("_leftImg8bit.png")]
            items.append((stem, p, root / "gtFine" / split / p.parent.name / f"{stem}_gtFine_labelIds.png"))
        super().__init__(items, cityscapes_lut(), size)


class LIP(LabelledImages):
    """``<root>/{split}_id.txt``, ``{split}_images/<id>.jpg``, ``{split}_segmentations/<id>.png``; 5, 16 or 19
    classes plus background."""

    def __init__(self, root: str | Path, split: str = "val", classes: int = 19, size: tuple[int, int] = (640, 320)):
        root = Path(root)
        items = [(i, root / f"{split}_images" / f"{i}.jpg", root / f"{split}_segmentations" / f"{i}.png")
                 for i in read_id_list(root / f"{split}_id.txt")]
        super().__init__(items, lip_lut(classes), size)


def build_dataset(name: str, root: str | Path, split: str, classes: int, resize: int = 320,
                  curated: str = "") -> Dataset:
    """The evaluation / training set of one benchmark, squashed to :func:`input_size` ``(name, resize)``.

    ``classes`` is the class set (VOC 20, COCO 27 / 171 / 80, Cityscapes 27, LIP 5 / 16 / 19), without the
    background channel that things-only sets add.
    """
    size = input_size(name, resize)
    if name == "voc":
        if classes != 20:
            raise ValueError(f"VOC has 20 classes, got {classes}")
        return VOCSegmentation(root, split, resize)
    if name == "coco":
        return COCOStuff(root, split, classes, size, curated or None)
    if name == "cityscapes":
        if classes != 27:
            raise ValueError(f"Cityscapes is evaluated on 27 classes, got {classes}")
        return Cityscapes(root, split, size)
    return LIP(root, split, classes, size)


@register("transfgu.cocostuff", paper="transfgu",
          doc="<root>/images/{train2017,val2017}/*.jpg + annotations/{train2017,val2017}/*.png "
              "+ annotations/instances_{train2017,val2017}.json")
def verify_cocostuff(root: Path) -> list[str]:
    root, problems = Path(root), []
    for folder in ("train2017", "val2017"):
        try:
            recs = coco_image_ids(root / "annotations" / f"instances_{folder}.json")
        except (OSError, ValueError) as e:
            problems.append(str(e))
            continue
        for r in recs:
            for p in (root / "images" / folder / r["file_name"],
                      root / "annotations" / folder / (Path(r["file_name"]).stem + ".png")):
                if not p.is_file():
                    problems.append(f"{p}: missing (image {r['id']} has instance annotations)")
    return problems


@register("transfgu.lip", paper="transfgu",
          doc="<root>/{train,val}_id.txt + {train,val}_images/<id>.jpg + {train,val}_segmentations/<id>.png")
def verify_lip(root: Path) -> list[str]:
    root, problems = Path(root), []
    for split in ("train", "val"):
        try:
            ids = read_id_list(root / f"{split}_id.txt")
        except (OSError, ValueError) as e:
            problems.append(str(e))
            continue
        for i in ids:
            for p in (root / f"{split}_images" / f"{i}.jpg", root / f"{split}_segmentations" / f"{i}.png"):
                if not p.is_file():
                    problems.append(f"{p}: missing (listed in {split}_id.txt)")
    return problems
