"""TransReID-SSL networks: ViT with a patchify or IBN conv stem (ICS) and the ReID head (DINO: ``shared.dino``).

* :class:`IBN`, :class:`ConvStem` -- the paper's IBN-based convolution stem ("ICS"), official
  ``dino/ours_vit.py`` / ``vit_pytorch.py`` ``PatchEmbed_overlap``-free conv stem. Key layout
  ``patch_embed.conv.{0..8}`` + ``patch_embed.proj`` as in the released checkpoints.
* :class:`ReIDViT` -- a timm ``VisionTransformer`` (flat keys = the official flat layout) whose forward
  resamples ``pos_embed`` the way DINO does for crops of another size (``interpolate_pos_encoding``).
* :class:`ReIDModel` -- ``build_transformer``: CLS -> BNNeck (frozen zero bias) -> bias-free classifier;
  triplet on the pre-BN feature, CE on the post-BN logits, test feature = pre-BN (``NECK_FEAT before``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shared.backbones import create_vit


# ----------------------------------------------------------------------------- IBN conv stem
class IBN(nn.Module):
    """Instance-Batch Normalisation (Pan et al. 2018, IBN-a): IN on the first ``ratio`` of the channels.

    ``IN`` = InstanceNorm2d(affine, no running stats: instance statistics in train *and* eval), ``BN`` =
    BatchNorm2d on the rest; outputs concatenated ``[IN, BN]``. (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, planes: int, ratio: float = 0.5):
        super().__init__()
        self.half = int(planes * ratio)
        self.IN = nn.InstanceNorm2d(self.half, affine=True)  # noqa: N815 (official key name)
        self.BN = nn.BatchNorm2d(planes - self.half)  # noqa: N815

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.split(x, [self.half, x.shape[1] - self.half], dim=1)
        return torch.cat([self.IN(a.contiguous()), self.BN(b.contiguous())], dim=1)


class ConvStem(nn.Module):
    """ICS: conv(k, s2)+IBN+ReLU, conv3x3+IBN+ReLU, conv3x3+BN+ReLU, then a (patch/2)-strided projection.

    Official (``hidden=64, first_kernel=7, patch=16``): 256x128 -> 128x64 -> 16x8 tokens, the same grid
    as the 16x16 patchify stem. ``norm='bn'`` replaces both IBNs by BatchNorm (the "no IN" ablation).
    (B, 3, H, W) -> (B, H/patch * W/patch, D).
    """

    def __init__(self, in_chans: int = 3, embed_dim: int = 384, patch_size: int = 16, hidden: int = 64,
                 first_kernel: int = 7, norm: str = "ibn"):
        super().__init__()
        if norm not in ("ibn", "bn"):
            raise ValueError(f"stem norm must be 'ibn' or 'bn', got {norm!r}")
        nrm = (lambda c: IBN(c)) if norm == "ibn" else (lambda c: nn.BatchNorm2d(c))
        self.patch_size = patch_size
        self.conv = nn.Sequential(
            nn.Conv2d(in_chans, hidden, first_kernel, stride=2, padding=first_kernel // 2, bias=False),
            nrm(hidden), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride=1, padding=1, bias=False), nrm(hidden), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride=1, padding=1, bias=False), nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
        )
        # Official: kernel = stride = 8 whatever STRIDE_SIZE says (patch 16 after the stride-2 first conv).
        # Official: PyTorch's default conv / norm initialisation (the ViT's _init_weights skips convs).
        self.proj = nn.Conv2d(hidden, embed_dim, patch_size // 2, stride=patch_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.conv(x)).flatten(2).transpose(1, 2)


# ----------------------------------------------------------------------------- ViT
class ReIDViT(nn.Module):
    """timm ViT (pre-LN eps 1e-6, qkv bias, CLS + learned pos_embed) with a selectable stem.

    ``forward(x)`` returns the CLS token after the final LayerNorm, (B, D). Any input size divisible by
    the patch works: pos_embed is resampled as DINO's ``interpolate_pos_encoding`` does (bicubic with
    ``scale_factor=((h + 0.1) / H0, (w + 0.1) / W0)``, not a target size).
    """

    def __init__(self, img_size: tuple[int, int] = (256, 128), patch_size: int = 16, embed_dim: int = 384,
                 depth: int = 12, num_heads: int = 6, mlp_ratio: float = 4.0, drop_path_rate: float = 0.1,
                 stem: str = "patchify", stem_hidden: int = 64, stem_kernel: int = 7):
        super().__init__()
        vit = create_vit("vit_small_patch16_224", img_size=tuple(img_size), patch_size=patch_size,
                         embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
                         num_classes=0, drop_path_rate=drop_path_rate, qkv_bias=True)
        self.cls_token, self.pos_embed, self.pos_drop = vit.cls_token, vit.pos_embed, vit.pos_drop
        self.blocks, self.norm = vit.blocks, vit.norm
        self.grid = (img_size[0] // patch_size, img_size[1] // patch_size)
        self.patch_size, self.embed_dim, self.stem = patch_size, embed_dim, stem
        if stem == "patchify":
            self.patch_embed = vit.patch_embed
            self.patch_embed.strict_img_size = False  # local crops are smaller than img_size
        elif stem in ("ics", "ics_bn"):
            self.patch_embed = ConvStem(3, embed_dim, patch_size, stem_hidden, stem_kernel,
                                        norm="ibn" if stem == "ics" else "bn")
        else:
            raise ValueError(f"model.stem must be patchify | ics | ics_bn, got {stem!r}")

    def interpolate_pos_encoding(self, h: int, w: int) -> torch.Tensor:
        """pos_embed for an ``h x w`` token grid, (1, 1 + h*w, D) (DINO's resampling, see class doc)."""
        gh, gw = self.grid
        if (h, w) == (gh, gw):
            return self.pos_embed
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        patch_pos = patch_pos.reshape(1, gh, gw, -1).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos, scale_factor=((h + 0.1) / gh, (w + 0.1) / gw), mode="bicubic")
        if patch_pos.shape[-2:] != (h, w):
            raise ValueError(f"pos_embed resample gave {tuple(patch_pos.shape[-2:])}, expected {(h, w)}")
        return torch.cat([cls_pos, patch_pos.flatten(2).transpose(1, 2)], dim=1)

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> final-normed tokens (B, 1 + N, D)."""
        h, w = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        t = self.patch_embed(x)
        t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], dim=1)
        t = self.pos_drop(t + self.interpolate_pos_encoding(h, w))
        return self.norm(self.blocks(t))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_tokens(x)[:, 0]


# ----------------------------------------------------------------------------- supervised ReID
class ReIDModel(nn.Module):
    """``build_transformer``: ``base`` ViT -> CLS ``global_feat`` -> ``bottleneck`` BN -> ``classifier``.

    Train: returns ``(logits (B, C) from the post-BN feature, global_feat (B, D) for the triplet)``.
    Eval: returns the test feature, ``global_feat`` (``neck_feat='before'``) or the BN feature (``'after'``).
    """

    def __init__(self, backbone: ReIDViT, num_classes: int, neck_feat: str = "before"):
        super().__init__()
        if neck_feat not in ("before", "after"):
            raise ValueError(f"neck_feat must be 'before' or 'after', got {neck_feat!r}")
        self.base, self.neck_feat = backbone, neck_feat
        d = backbone.embed_dim
        self.bottleneck = nn.BatchNorm1d(d)
        self.bottleneck.bias.requires_grad_(False)  # BNNeck: frozen zero shift
        nn.init.ones_(self.bottleneck.weight)
        nn.init.zeros_(self.bottleneck.bias)
        self.classifier = nn.Linear(d, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, x: torch.Tensor):
        global_feat = self.base(x)
        feat = self.bottleneck(global_feat)
        if self.training:
            return self.classifier(feat), global_feat
        return global_feat if self.neck_feat == "before" else feat
