"""The three TransFGU stages as functions over in-memory tensors (used by the embedded reproduction and tests).

1. :func:`build_concepts` -- ``<ds>_crop.py``: crops of the 2x-upsampled image by fg/bg windows, their CLS
   tokens, k-means -> ``mu = [things; stuff]`` ``(C, D)``.
2. :func:`generate_cams` -- ``<ds>_generate_pseudo_label.py``: CAM per class, batch ``N`` (official 8).
3. :func:`train_decoder` -- ``<ds>_trainval.py``: the decoder on frozen patch tokens with bootstrapping.
Plus the evaluation (whole-set Hungarian, bilinear upsampling, argmax) and the bottom-up baseline
(k-means on L2-normalised patch tokens).
"""
from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from shared.metrics.segmentation import ConfusionAccumulator

from .losses import transfgu_loss
from .model import MaskTransformer, box_anchors, cam_pseudo_labels, cls_attention, encode, fg_bg_crops, kmeans


@torch.no_grad()
def build_concepts(vit: nn.Module, images: torch.Tensor, patch: int, n_things: int, n_stuff: int,
                   scales=(0.5, 0.4, 0.3), seed: int = 0, batch: int = 64) -> tuple[torch.Tensor, dict]:
    """Concept centres ``(n_things + n_stuff, D)`` from the fg / bg crop banks of ``images`` ``(N, 3, S, S)``."""
    vit.eval()
    s = images.shape[-1]
    big = F.interpolate(images, scale_factor=2, mode="bilinear", align_corners=False)
    h = 2 * s // patch
    anchors = box_anchors(h, h, scales)
    fg_bank, bg_bank = [], []
    for i in range(0, len(big), batch):
        _, _, attn = encode(vit, big[i:i + batch])
        a = cls_attention(attn, h, h)
        for img, ai in zip(big[i:i + batch], a):
            fg, bg = fg_bg_crops(img, ai > ai.mean(), anchors, (s, s))
            fg_bank.append(fg)
            bg_bank.append(bg)
    feats = []
    for bank in (torch.cat(fg_bank), torch.cat(bg_bank)):
        feats.append(torch.cat([encode(vit, bank[j:j + batch])[0] for j in range(0, len(bank), batch)])
                     if len(bank) else bank.new_zeros(0, vit.embed_dim))
    info = {"fg_crops": len(feats[0]), "bg_crops": len(feats[1]), "windows_per_image": len(anchors)}
    if len(feats[0]) < n_things or len(feats[1]) < n_stuff:
        raise RuntimeError(f"too few crops for k-means: {info}")
    mu = torch.cat([kmeans(feats[0], n_things, seed=seed), kmeans(feats[1], n_stuff, seed=seed + 1)])
    return mu, info


def generate_cams(vit: nn.Module, images: torch.Tensor, centroids: torch.Tensor, patch: int, batch: int = 8,
                  sign: float = -1.0) -> torch.Tensor:
    """CAMs ``(N, C, h, w)`` in batches of ``batch`` (the official N; the CAM scale depends on it)."""
    return torch.cat([cam_pseudo_labels(vit, images[i:i + batch], centroids, patch, sign)
                      for i in range(0, len(images), batch)])


def augment(images: torch.Tensor, cams: torch.Tensor, patch: int, g: torch.Generator, out: int | None = None):
    """Official train augmentation, geometric part: a random crop of side fraction s in {.4, ..., .9} (randint
    excludes 1.0), image resized bilinearly to ``out`` (official ``H/2``), CAM cropped by ``roi_align`` (avg,
    ``aligned=True``) to the token grid of ``out``, then a horizontal flip with p .5 per image."""
    n, _, hh, ww = images.shape
    out = out or hh // 2
    frac = torch.randint(4, 10, (n,), generator=g).float() / 10
    ch, cw = frac * hh, frac * ww
    y0 = (torch.rand(n, generator=g) * (hh - ch)).floor()
    x0 = (torch.rand(n, generator=g) * (ww - cw)).floor()
    idx = torch.arange(n, dtype=torch.float32)
    boxes = torch.stack([idx, x0, y0, x0 + cw, y0 + ch], 1)
    x = roi_align(images, boxes, out, spatial_scale=1.0, sampling_ratio=0, aligned=True)
    y = roi_align(cams, boxes, out // patch, spatial_scale=cams.shape[-1] / ww, sampling_ratio=0, aligned=True)
    flip = torch.rand(n, generator=g) < 0.5
    x[flip], y[flip] = x[flip].flip(-1), y[flip].flip(-1)
    return x, y


def colour_augment(x: torch.Tensor, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)) -> torch.Tensor:
    """Official train augmentation, colour part, on an ImageNet-normalised batch ``(B, 3, H, W)``: in [0, 1],
    ColorJitter(.8, .8, .8, .2) with p .3, RandomGrayscale .2, GaussianBlur(3, sigma in [1, 2]) with p .2; each
    decided **once per batch** (the official code applies them to the whole GPU batch), then normalised again."""
    import torchvision.transforms as T

    m, s = torch.tensor(mean, device=x.device).view(1, 3, 1, 1), torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    y = (x * s + m).clamp(0, 1)
    y = T.Compose([T.RandomApply([T.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.3), T.RandomGrayscale(0.2),
                   T.RandomApply([T.GaussianBlur(3, (1.0, 2.0))], p=0.2)])(y)
    return (y - m) / s


def patch_tokens(vit: nn.Module, x: torch.Tensor, patch: int) -> tuple[torch.Tensor, tuple[int, int]]:
    with torch.no_grad():
        _, p, _ = encode(vit, x)
    return p, (x.shape[-2] // patch, x.shape[-1] // patch)


def bootstrap_refresh(epoch: int, start: int, intervals: list[int]) -> bool:
    """Official rule: at epoch e >= start with e % I(e) == 0, I(e) = intervals[min(e // 10, len - 1)]."""
    return epoch >= start and epoch % intervals[min(epoch // 10, len(intervals) - 1)] == 0


def train_decoder(vit: nn.Module, images: torch.Tensor, cams: torch.Tensor, n_cls: int, patch: int,
                  epochs: int = 8, batch: int = 32, lr: float = 1e-3, wd: float = 5e-4, start: int = 2,
                  intervals=(2,), things_only: bool = False, crop_out: int | None = None, seed: int = 0,
                  evaluate: Callable[[nn.Module], dict] | None = None, dec_kwargs: dict | None = None,
                  log=print) -> tuple[nn.Module, list[dict]]:
    """Decoder training [spec 2.4-2.5]; returns ``(last decoder, per-epoch history)``.

    Teacher refresh: teacher <- student, student reset to its *initial* weights, k <- 0 (Adam state kept).
    Gradients clamped elementwise to [-1, 1]; a step with L <= 0 is skipped. wd on >= 2-D weights only.
    """
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    dec = MaskTransformer(n_cls, vit.embed_dim, **(dec_kwargs or {}))
    init_state = copy.deepcopy(dec.state_dict())
    decay = [p for p in dec.parameters() if p.ndim >= 2]
    no_decay = [p for p in dec.parameters() if p.ndim < 2]
    opt = torch.optim.Adam([{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    teacher, k, history = None, 0, []
    vit.eval()
    for epoch in range(epochs):
        if bootstrap_refresh(epoch, start, list(intervals)):
            teacher = copy.deepcopy(dec).eval().requires_grad_(False)
            dec.load_state_dict(init_state)
            k = 0
        elif teacher is not None:
            k += 1
        dec.train()
        perm = torch.randperm(len(images), generator=g)
        sums = {}
        for i in range(0, len(images) - batch + 1, batch):
            idx = perm[i:i + batch]
            x, cam = augment(images[idx], cams[idx], patch, g, crop_out)
            tok, grid = patch_tokens(vit, x, patch)
            logits, emb = dec(tok, grid)
            t_logits = teacher(tok, grid)[0] if teacher is not None else None
            out = transfgu_loss(logits, emb, cam, t_logits, k, things_only, generator=g)
            if out["loss"].item() <= 0:
                continue
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            for p in dec.parameters():
                if p.grad is not None:
                    p.grad.clamp_(-1, 1)
            opt.step()
            for key, v in out.items():
                sums[key] = sums.get(key, 0.0) + float(v.detach()) * len(idx)
        row = {"epoch": epoch + 1, "bootstrapping": teacher is not None, "k": k,
               **{key: v / max(1, (len(images) // batch) * batch) for key, v in sums.items()}}
        if evaluate is not None:
            row.update(evaluate(dec))
        history.append(row)
        log(f"    decoder epoch {epoch + 1}/{epochs}: " + ", ".join(
            f"{a} {b:.3f}" if isinstance(b, float) else f"{a} {b}" for a, b in row.items() if a != "epoch"))
    return dec, history


# ----------------------------------------------------------------------------- evaluation
def score_maps(pred_logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict:
    """Official protocol: upsample ``(N, K, h, w)`` bilinearly to the label size, argmax, one whole-set
    Hungarian match (K = #classes), mIoU / pixel accuracy in percent."""
    acc = ConfusionAccumulator(num_classes, pred_logits.shape[1])
    up = F.interpolate(pred_logits, labels.shape[-2:], mode="bilinear", align_corners=False).argmax(1)
    acc.update(up, labels)
    s = acc.scores()
    return {"mIoU": s["mIoU"], "acc": s["pixel_accuracy"]}


@torch.no_grad()
def decoder_logits(vit: nn.Module, dec: nn.Module, images: torch.Tensor, patch: int, batch: int = 64) -> torch.Tensor:
    dec.eval()
    out = []
    for i in range(0, len(images), batch):
        tok, grid = patch_tokens(vit, images[i:i + batch], patch)
        out.append(dec(tok, grid)[0])
    return torch.cat(out)


@torch.no_grad()
def kmeans_baseline(vit: nn.Module, train_images: torch.Tensor, val_images: torch.Tensor, k: int, patch: int,
                    seed: int = 0, max_tokens: int = 20000) -> torch.Tensor:
    """Bottom-up baseline: k-means (K = #classes) on L2-normalised last-layer patch tokens of the train set;
    val tokens scored by negative distance to the centres -> ``(N, K, h, w)`` for :func:`score_maps`."""
    tr, _ = patch_tokens(vit, train_images, patch)
    tr = F.normalize(tr.flatten(0, 1), dim=-1)
    g = torch.Generator().manual_seed(seed)
    tr = tr[torch.randperm(len(tr), generator=g)[:max_tokens]]
    centres = kmeans(tr, k, iters=50, restarts=3, seed=seed)
    va, grid = patch_tokens(vit, val_images, patch)
    d = -torch.cdist(F.normalize(va, dim=-1), centres[None].expand(len(va), -1, -1))
    return d.transpose(1, 2).reshape(len(va), k, *grid)
