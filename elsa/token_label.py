"""Token labelling as VOLO's official training uses it (sail-sg/volo ``main.py`` + the ``tlt`` package of
zihangJiang/TokenLabeling, v0.1.0): dense per-image label maps, their crop-aligned targets, MixToken and the
loss. Our code, written from a reading of the official one; where we deviate it says so.

**Label-map format** (``tlt`` ``generate_label.py``; the released NFNet-F6 maps have it): one file per
training image, ``<label_root>/<wnid>/<image stem>.pt``, a ``torch.save``d half tensor of shape
``(2, k, H, W)`` -- ``[0]`` the top-k *logits* of the labelling model's 1x1-conv classifier at each of the
H x W positions, ``[1]`` their class indices (stored as floats), k = 5.

**Targets** (``tlt/data/mixup.py`` ``get_labelmaps_with_coords``): the top-k logits are scattered into a
dense (num_classes, H, W) map (0 elsewhere), the training crop's box is cut out of it with ``roi_align``
to ``token_label_size`` x ``token_label_size`` cells (one per aux token; 14 at 224 px) and to 1 x 1 (the
class-token target), softmax over classes, then label smoothing as ``p * on + off``. The crop box is
recorded by the last transform (flips and RandAugment's geometric ops act on the image *and* the label
map before the crop, ``tlt/data/label_transforms_factory.py``), as fractions (top, left, height, width).
The official code hands the box to ``roi_align`` as (top, left, bottom, right) although ``roi_align``
reads (x1, y1, x2, y2): rows and columns of the crop are swapped when read from the map. We keep that
(``roi_order: official``); ``roi_order: xy`` reads the box the right way round (a departure, off by default).

**MixToken** (``volo/models/volo.py`` ``forward`` with ``mix_token=True``): after the patch embedding
(stride 8) a box of the stride-16 token grid (``pooling_scale`` 2), lambda ~ Beta(1, 1), is replaced by
the same box of the batch-flipped images; after the network the aux-head outputs in that box are flipped
back, so each image's dense targets stay its own, and the class target becomes
``lam * t + (1 - lam) * t.flip(0)`` with ``lam = 1 - box area / tokens`` (``TokenLabelCrossEntropy``).
The official code draws lambda and the box with numpy's global RNG; we draw them with torch's (same
distributions), so a seeded run is reproducible through ``engine.seed``.

**Loss** (``volo/loss/cross_entropy.py``): ``cls_weight * CE(cls, t_cls) + dense_weight * CE(aux, t_aux)``
with soft-target cross entropies, VOLO's defaults ``dense_weight`` 0.5, ``cls_weight`` 1.0; with
``ground_truth`` (VOLO's fine-tuning runs) the class target is blended with the one-hot ground truth,
``ratio = 0.9 - 0.4 * [argmax agree]``, ``t_cls = ratio * t_cls + (1 - ratio) * gt`` (``TokenLabelGTCrossEntropy``).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from timm.loss import SoftTargetCrossEntropy
from torch import nn
from torch.utils.data import Dataset

ROI_ORDERS = ("official", "xy")


@dataclass
class TokenLabelConfig:
    """``train.*`` in the configs: token labelling (VOLO ``--token-label --token-label-data DIR
    --token-label-size N --dense-weight --cls-weight --ground-truth``)."""

    token_label: bool = False
    token_label_root: str = ""  # <root>/<wnid>/<stem>.pt, (2, k, H, W) top-k maps (NFNet-F6 for VOLO)
    token_label_size: int = 14  # aux tokens per side: img_size / 16 (14 at 224, 24 at 384, 28 at 448, 32 at 512)
    dense_weight: float = 0.5  # VOLO main.py default
    cls_weight: float = 1.0
    ground_truth: bool = False  # VOLO's fine-tuning runs (--ground-truth)
    mix_token: bool = True  # VOLO models are built with mix_token=True
    roi_order: str = "official"  # official | xy (see the module docstring)


# ----------------------------------------------------------------------------------------------- file format
def label_map_path(label_root: str | Path, image_path: str | Path) -> Path:
    """``<label_root>/<class folder>/<file name up to its first dot>.pt`` (``DatasetTokenLabel``)."""
    p = Path(image_path)
    return Path(label_root) / p.parent.name / (p.name.split(".")[0] + ".pt")


def load_label_map(path: str | Path, num_classes: int | None = None) -> torch.Tensor:
    """One label map as float32 ``(2, k, H, W)``: scores, class indices. Bad files raise naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no token-label map for this image (train.token_label_root)")
    try:
        t = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is reported the same way
        raise ValueError(f"{path}: not a readable token-label map ({type(e).__name__})") from None
    if not torch.is_tensor(t) or t.ndim != 4 or t.shape[0] != 2:
        shape = tuple(t.shape) if torch.is_tensor(t) else type(t).__name__
        raise ValueError(f"{path}: a token-label map is a (2, k, H, W) tensor (top-k scores, class indices), "
                         f"got {shape}")
    t = t.float()
    idx = t[1]
    if (idx != idx.round()).any() or idx.min() < 0 or (num_classes is not None and idx.max() >= num_classes):
        raise ValueError(f"{path}: class indices must be integers in [0, {num_classes}), "
                         f"got {idx.min().item():g}..{idx.max().item():g}")
    return t


# ------------------------------------------------------------------------------ transforms on image + label map
def affine_label(label: torch.Tensor, matrix: tuple[float, ...]) -> torch.Tensor:
    """Resample a ``(2, k, H, W)`` map with the 2x3 ``matrix`` (output -> input, rows/cols), nearest
    neighbour; scores outside become 0, indices take the nearest edge (``tlt`` ``affine_label``)."""
    from scipy import ndimage

    a, b, c, d, e, f = matrix
    m = [[1, 0, 0, 0], [0, a, b, c], [0, d, e, f]]
    value = ndimage.affine_transform(label[0].numpy(), matrix=m, order=0, mode="constant")
    index = ndimage.affine_transform(label[1].numpy(), matrix=m, order=0, mode="nearest")
    return torch.from_numpy(np.stack([value, index], axis=0))


def rotate_label(label: torch.Tensor, degrees: float) -> torch.Tensor:
    """``tlt`` ``rotate_label``: rotation about the map centre (kept as written there)."""
    _, _, w, h = label.shape
    cx, cy = w / 2.0, h / 2.0
    ang = math.radians(degrees)
    m = [round(math.cos(ang), 15), round(math.sin(ang), 15), 0.0,
         round(-math.sin(ang), 15), round(math.cos(ang), 15), 0.0]
    m[2] = m[0] * -cx + m[1] * -cy + cx
    m[5] = m[3] * -cx + m[4] * -cy + cy
    return affine_label(label, tuple(m))


# RandAugment op name -> its label op (only geometric ops move the label map; tlt ``NAME_TO_LABELOP``)
LABEL_OPS = {
    "Rotate": rotate_label,
    "ShearX": lambda lab, fac: affine_label(lab, (1, 0, 0, fac, 1, 0)),
    "ShearY": lambda lab, fac: affine_label(lab, (1, fac, 0, 0, 1, 0)),
    "TranslateXRel": lambda lab, pct: affine_label(lab, (1, 0, 0, 0, 1, pct * lab.shape[3])),
    "TranslateYRel": lambda lab, pct: affine_label(lab, (1, 0, pct * lab.shape[2], 0, 1, 0)),
}


class RandAugmentWithLabel:
    """timm's RandAugment (``rand-m9-mstd0.5-inc1``) whose geometric ops also move the label map with the
    same drawn level (``tlt`` ``RandAugment``: one draw per op, shared by image and map)."""

    def __init__(self, config_str: str, hparams: dict):
        from timm.data.auto_augment import rand_augment_transform

        self.ra = rand_augment_transform(config_str, hparams)

    def __call__(self, img, label: torch.Tensor):
        ra = self.ra
        ops = np.random.choice(ra.ops, ra.num_layers, replace=ra.choice_weights is None, p=ra.choice_weights)
        for op in ops:
            if op.prob < 1.0 and random.random() > op.prob:
                continue
            magnitude = op.magnitude
            if op.magnitude_std == float("inf"):
                magnitude = random.uniform(0, magnitude)
            elif op.magnitude_std > 0:
                magnitude = random.gauss(magnitude, op.magnitude_std)
            magnitude = max(0.0, min(magnitude, op.magnitude_max or 10.0))
            args = op.level_fn(magnitude, op.hparams) if op.level_fn is not None else ()
            img = op.aug_fn(img, *args, **op.kwargs)
            if op.name in LABEL_OPS:
                label = LABEL_OPS[op.name](label, *args)
        return img, label


class TokenLabelTransform:
    """The official training transform (``tlt`` ``transforms_imagenet_train``): horizontal flip (image and
    map), RandAugment (image; geometric ops on the map too) or colour jitter when there is none, then the
    random resized crop, which records its box, then tensor, normalisation, random erasing (image only).
    Returns ``(image tensor, label map, crop box (top, left, height, width) as fractions)``."""

    def __init__(self, img_size: int, auto_augment: str = "rand-m9-mstd0.5-inc1", color_jitter: float = 0.4,
                 reprob: float = 0.25, remode: str = "pixel", interpolation: str = "random", hflip: float = 0.5):
        from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
        from timm.data.random_erasing import RandomErasing
        from timm.data.transforms import RandomResizedCropAndInterpolation, str_to_pil_interp
        from torchvision import transforms

        self.hflip = hflip
        self.secondary = None
        if auto_augment:
            hp = dict(translate_const=int(img_size * 0.45),
                      img_mean=tuple(min(255, round(255 * x)) for x in IMAGENET_DEFAULT_MEAN))
            if interpolation and interpolation != "random":
                hp["interpolation"] = str_to_pil_interp(interpolation)
            self.secondary = RandAugmentWithLabel(auto_augment, hp)
        elif color_jitter:
            self.jitter = transforms.ColorJitter(*(float(color_jitter),) * 3)
        self.crop = RandomResizedCropAndInterpolation(img_size, interpolation=interpolation)
        self.final = transforms.Compose([transforms.ToTensor(),
                                         transforms.Normalize(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)])
        self.erase = RandomErasing(reprob, mode=remode, max_count=1, device="cpu") if reprob > 0 else None

    def __call__(self, img, label: torch.Tensor):
        from torchvision.transforms import functional as TF

        if self.hflip > 0 and torch.rand(1).item() < self.hflip:
            img, label = TF.hflip(img), label.flip(3)
        if self.secondary is not None:
            img, label = self.secondary(img, label)
        elif hasattr(self, "jitter"):
            img = self.jitter(img)
        i, j, h, w = self.crop.get_params(img, self.crop.scale, self.crop.ratio)
        W, H = img.size
        box = torch.tensor([i / H, j / W, h / H, w / W])
        interp = self.crop.interpolation
        interp = random.choice(interp) if isinstance(interp, (tuple, list)) else interp
        x = self.final(TF.resized_crop(img, i, j, h, w, list(self.crop.size), interp))
        if self.erase is not None:
            x = self.erase(x)
        return x, label, box


class TokenLabelImageFolder(Dataset):
    """ImageNet ``train/<wnid>/*`` images with their label maps: items are ``(image, label map (2, k, H, W),
    crop box (4,), class)`` (the official dataset packs box and class into the map; we return them apart)."""

    def __init__(self, images, label_root: str | Path, transform: TokenLabelTransform | None,
                 num_classes: int | None = None):
        """``images``: the ``train`` folder, or an ``ImageFolder`` of it (its ``samples`` and ``loader``)."""
        from torchvision.datasets import ImageFolder

        if not Path(label_root).is_dir():
            raise FileNotFoundError(f"train.token_label_root={label_root}: no such folder (the label maps, "
                                    f"<root>/<wnid>/<image stem>.pt)")
        self.images = images if hasattr(images, "samples") else ImageFolder(str(images))
        self.label_root = Path(label_root)
        self.transform = transform
        self.num_classes = num_classes

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        path, target = self.images.samples[index]
        label = load_label_map(label_map_path(self.label_root, path), self.num_classes)
        img = self.images.loader(path)
        if self.transform is None:
            return img, label, torch.tensor([0.0, 0.0, 1.0, 1.0]), target
        x, label, box = self.transform(img, label)
        return x, label, box, target


# ------------------------------------------------------------------------------------------------ targets
def dense_label_maps(topk: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, 2, k, H, W) top-k maps -> (B, num_classes, H, W) scores, 0 where a class is not in the top k."""
    out = topk.new_zeros(topk.shape[0], num_classes, *topk.shape[3:])
    return out.scatter_(1, topk[:, 1].long(), topk[:, 0].float())


def token_label_targets(topk: torch.Tensor, box: torch.Tensor, target: torch.Tensor, num_classes: int,
                        label_size: int, smoothing: float = 0.1, roi_order: str = "official") -> torch.Tensor:
    """``(B, num_classes, 2 + S*S)``: [:, :, 0] the smoothed one-hot ground truth, [:, :, 1] the crop's
    class-token target, [:, :, 2:] the S x S token targets (row-major). ``box``: (top, left, height, width)
    fractions of the transformed image. Label smoothing: ``p * (1 - s + s / C) + s / C``."""
    from torchvision.ops import roi_align

    if roi_order not in ROI_ORDERS:
        raise ValueError(f"train.roi_order must be one of {ROI_ORDERS}, got '{roi_order}'")
    maps = dense_label_maps(topk, num_classes)
    B, C, H, W = maps.shape
    b = box.float().clone()
    b[:, 2:] += b[:, :2]  # (top, left, bottom, right)
    if roi_order == "official":
        rois = b * W - 0.5  # read by roi_align as (x1, y1, x2, y2): rows and columns swapped, as released
    else:
        rois = torch.stack([b[:, 1] * W, b[:, 0] * H, b[:, 3] * W, b[:, 2] * H], 1) - 0.5
    rois = torch.cat([torch.arange(B, dtype=rois.dtype, device=rois.device)[:, None], rois], 1)
    cls = roi_align(maps, rois, output_size=(1, 1)).view(B, C, 1)
    if label_size > 1:
        tok = roi_align(maps, rois, output_size=(label_size, label_size)).view(B, C, -1)
        soft = torch.cat([cls, tok], 2)
    else:
        soft = cls
    off = smoothing / num_classes
    on = 1.0 - smoothing + off
    soft = soft.softmax(1) * on + off
    gt = torch.full((B, C), off, device=maps.device).scatter_(1, target.view(-1, 1).long(), on)
    return torch.cat([gt[:, :, None], soft], 2)


# ---------------------------------------------------------------------------------------------- MixToken
def mix_token_box(rows: int, cols: int, lam: float, cx: int, cy: int) -> tuple[int, int, int, int]:
    """The official ``rand_bbox`` on a rows x cols token grid given lambda and the centre (cx: row, cy: col):
    ``(r1, c1, r2, c2)``, side ``int(n * sqrt(1 - lam))``, clipped to the grid."""
    cut = math.sqrt(1.0 - lam)
    cut_r, cut_c = int(rows * cut), int(cols * cut)
    r1, r2 = int(np.clip(cx - cut_r // 2, 0, rows)), int(np.clip(cx + cut_r // 2, 0, rows))
    c1, c2 = int(np.clip(cy - cut_c // 2, 0, cols)), int(np.clip(cy + cut_c // 2, 0, cols))
    return r1, c1, r2, c2


def swap_box(x: torch.Tensor, box: tuple[int, int, int, int], scale: int = 1) -> torch.Tensor:
    """(B, H, W, C): the ``box`` (token grid units, times ``scale`` pixels of x) taken from ``x.flip(0)``."""
    r1, c1, r2, c2 = (v * scale for v in box)
    out = x.clone()
    out[:, r1:r2, c1:c2] = x.flip(0)[:, r1:r2, c1:c2]
    return out


def volo_token_label_forward(model: nn.Module, x: torch.Tensor, mix_token: bool):
    """Training forward of a timm ``VOLO`` (or ``ElsaVOLO``) as the official ``VOLO.forward`` with
    ``return_dense=True``: ``(class logits (B, C), aux logits (B, N, C), MixToken box)``. timm's own
    ``forward_train`` returns the class token's features, not logits, hence this function."""
    if model.aux_head is None:
        raise ValueError("token labelling needs VOLO's aux head (use_aux_head=True)")
    pooling_scale = model.pooling_scale  # 2: the aux tokens live on the stride-16 grid
    x = model.patch_embed(x).permute(0, 2, 3, 1)  # B, H, W, C at stride 8
    rows, cols = x.shape[1] // pooling_scale, x.shape[2] // pooling_scale
    box = (0, 0, 0, 0)
    if mix_token and model.training:
        lam = torch.rand(()).item()  # Beta(1, 1)
        box = mix_token_box(rows, cols, lam, int(torch.randint(rows, ()).item()), int(torch.randint(cols, ()).item()))
        x = swap_box(x, box, pooling_scale)
    x = model.forward_tokens(x)
    if model.post_network is not None:
        x = model.forward_cls(x)
    x = model.norm(x)
    cls = model.head(model.head_drop(x[:, 0]))
    aux = model.aux_head(x[:, 1:])
    if box[2] > box[0] and box[3] > box[1]:  # flip the mixed tokens' outputs back
        aux = swap_box(aux.reshape(aux.shape[0], rows, cols, -1), box).reshape(aux.shape[0], rows * cols, -1)
    return cls, aux, box


# --------------------------------------------------------------------------------------------------- loss
soft_target_ce = SoftTargetCrossEntropy()  # mean over rows of -sum_k target_k log softmax(logits)_k (timm's)


class TokenLabelLoss(nn.Module):
    """VOLO's ``TokenLabelCrossEntropy`` (``ground_truth=False``) / ``TokenLabelGTCrossEntropy``."""

    def __init__(self, dense_weight: float = 0.5, cls_weight: float = 1.0, ground_truth: bool = False):
        super().__init__()
        if dense_weight + cls_weight <= 0:
            raise ValueError(f"train.dense_weight + train.cls_weight must be > 0, got {dense_weight} + {cls_weight}")
        self.dense_weight, self.cls_weight, self.ground_truth = dense_weight, cls_weight, ground_truth

    def forward(self, cls: torch.Tensor, aux: torch.Tensor, box: tuple[int, int, int, int],
                target: torch.Tensor) -> torch.Tensor:
        B, N, C = aux.shape
        if target.ndim == 2:  # a plain (B, C) soft target: every token gets it
            t_cls, t_aux = target, target.repeat(1, N).reshape(B * N, C)
        else:
            if target.shape[2] - 2 != N:
                raise ValueError(f"token-label targets have {target.shape[2] - 2} tokens, the model {N}: set "
                                 f"train.token_label_size to the aux grid side ({math.isqrt(N)})")
            t_cls = target[:, :, 1]
            if self.ground_truth:
                gt = target[:, :, 0]
                ratio = (0.9 - 0.4 * (gt.argmax(-1) == t_cls.argmax(-1)).float()).unsqueeze(-1)
                t_cls = t_cls * ratio + gt * (1 - ratio)
            t_aux = target[:, :, 2:].transpose(1, 2).reshape(-1, C)
        r1, c1, r2, c2 = box
        lam = 1 - (r2 - r1) * (c2 - c1) / N
        if lam < 1:
            t_cls = lam * t_cls + (1 - lam) * t_cls.flip(0)
        return (self.cls_weight * soft_target_ce(cls, t_cls)
                + self.dense_weight * soft_target_ce(aux.reshape(-1, C), t_aux))
