"""A convolutional patch embedding for the embedded miniature (ours; not part of KVT or DeiT).

``ConvPatchEmbed`` is a drop-in ``embed_layer`` for timm's ``VisionTransformer``: the linear ``patch x patch``
projection is replaced by ``log2(patch)`` 3x3 stride-2 convolutions (BN, ReLU) and a final 1x1 projection to
``embed_dim``, as in Xiao et al. 2021 ("Early convolutions help transformers see better"). The token grid,
count and width are those of the plain patch embedding (``(B, (H/patch) * (W/patch), D)``), so the attention,
and the number of keys k is taken from, are unchanged. Why: a ViT this small trained from scratch for a few
hundred steps barely leaves chance with a linear patch embedding; the stem makes it learn within the budget,
for the dense and the k-NN model alike (both rows use it).

It computes ``scaled_relu_stem.model.ConvStemEmbed(stem=StemConfig(layout="xiao"))``, but is kept as its own
module: its parameters are ``proj.{i}`` (there ``backbone.{i}`` + ``proj``) and its seeded init follows the
linear projection its ``PatchEmbed`` base draws and discards, so the swap would rename checkpoint keys and
change the frozen miniature's seeded numbers (tests/test_knn_attention_models.py checks the equivalence).
"""
from __future__ import annotations

import math

from timm.layers import PatchEmbed
from torch import nn


class ConvPatchEmbed(PatchEmbed):
    """timm ``PatchEmbed`` with ``proj`` = [3x3 s2 conv, BN, ReLU] x log2(patch) + 1x1 conv;
    (B, C, H, W) -> (B, N, D)."""

    def __init__(self, img_size=224, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768, **kwargs):
        super().__init__(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim, **kwargs)
        p = self.patch_size[0]
        n = int(round(math.log2(p)))
        if self.patch_size[0] != self.patch_size[1] or 2 ** n != p or n < 1:
            raise ValueError(f"ConvPatchEmbed: patch_size must be a square power of 2 >= 2, got {self.patch_size}")
        layers: list[nn.Module] = []
        c_in = in_chans
        for i in range(n):
            c_out = embed_dim // 2 ** (n - 1 - i)  # widths double up to embed_dim
            layers += [nn.Conv2d(c_in, c_out, 3, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        layers.append(nn.Conv2d(c_in, embed_dim, 1))
        self.proj = nn.Sequential(*layers)
