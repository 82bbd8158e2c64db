"""ELSA: enhanced local self-attention (Zhou et al., arXiv 2112.12786), and ELSA-Swin on timm's Swin.

Follows the released code (damo-cv/ELSA ``cls/models/elsa/elsa.py`` and ``cls/models/elsa_swin.py``).
Input of every block is NHWC ``(B, H, W, C)`` like timm's Swin blocks.

ELSA, per block (C = dim, G heads, k kernel, d dilation, gw group width):

1. ``pre_proj`` (1x1 conv) -> q, k (d_qk channels each, d_qk = ceil((C // 3 * 2) / gw) * gw) and v (C).
2. Hadamard attention, **position-wise**: ``h = q * k * scale`` (scale = 1 in ELSA-Swin: qk_scale=1,
   no 1/sqrt(d)). Neighbours enter only through the next conv.
3. Attention generator: ``conv kxk (groups d_qk/gw, dilation d) -> GELU -> conv 1x1 -> (G, k*k)``,
   softmax over the k*k axis (zero-padded border neighbours keep their share of the mass).
4. Ghost head + aggregation (``elsa.op``): ``y = sum_j (M^lam A + gamma Bg)_j * v_shift_j``.
5. ``post_proj`` (Linear C -> C).

With lam = 0, gamma = 1 (all released ELSA-Swin weights) step 4 is local attention with the Hadamard
maps plus a k x k depthwise convolution of v with kernel Bg.

:class:`LocalSelfAttention` is the plain local self-attention (LSA) baseline of the embedded run:
scaled dot-product ``q_p . k_{p+o_j}`` over the same k x k neighbourhood with a learned relative
position bias; border neighbours are masked out. The ELSA repository has no LSA code: this is our
baseline (SASA-style), not the paper's ablation code.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, Mlp, calculate_drop_path_rates, trunc_normal_
from timm.models import SwinTransformer, build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from .op import IMPLS, elsa_aggregate, ghost_terms, local_attention_tiled, local_logits_tiled, valid_neighbours


def make_ghost_head(dim_v: int, kernel_size: int, lam: float, gamma: float) -> nn.Parameter | None:
    """The official ``ghost_head`` parameter: lam != 0 and gamma != 0 -> (2, 1, C, k, k) [mul ~ N(0, 1);
    add ~ trunc-normal(.02)]; only gamma -> (1, C, k, k) add; only lam -> (1, C, k, k) mul; else None."""
    shape = (dim_v, kernel_size, kernel_size)
    if lam != 0 and gamma != 0:
        return nn.Parameter(torch.cat([torch.randn(1, 1, *shape), trunc_normal_(torch.zeros(1, 1, *shape), std=.02)]))
    if gamma != 0:
        return nn.Parameter(trunc_normal_(torch.zeros(1, *shape), std=.02))
    if lam != 0:
        return nn.Parameter(torch.randn(1, *shape))
    return None


class ELSA(nn.Module):
    """Enhanced local self-attention; attribute names match the official checkpoints.

    Args:
        dim: input channels C. num_heads: G. kernel_size: k (odd). dilation: d.
        dim_qk / dim_v: q/k and v widths (default C // 3 * 2 rounded up to ``group_width``, and C).
        qk_scale: scale of the Hadamard product (ELSA blocks pass 1; ``None`` = (dim_v / G) ** -0.5).
        lam, gamma: exponent of the multiplicative and weight of the additive ghost matrices.
        impl: aggregation form, one of ``elsa.op.IMPLS`` (all compute the same output).
    """

    def __init__(self, dim: int, num_heads: int, dim_qk: int | None = None, dim_v: int | None = None,
                 kernel_size: int = 5, dilation: int = 1, qkv_bias: bool = False,
                 qk_scale: float | None = None, attn_drop: float = 0., proj_drop: float = 0.,
                 group_width: int = 8, groups: int = 1, lam: float = 1., gamma: float = 1.,
                 impl: str = "auto", tile: int = 7):
        super().__init__()
        if impl not in IMPLS:
            raise ValueError(f"ELSA: impl must be one of {IMPLS}, got '{impl}'")
        if kernel_size % 2 == 0:
            raise ValueError(f"ELSA: kernel_size must be odd, got {kernel_size}")
        self.num_heads, self.kernel_size, self.dilation = num_heads, kernel_size, dilation
        self.dim_v = dim_v or dim
        if self.dim_v % num_heads:
            raise ValueError(f"ELSA: dim_v={self.dim_v} is not divisible by num_heads={num_heads}")
        dim_qk = dim_qk or dim // 3 * 2
        self.dim_qk = math.ceil(dim_qk / group_width) * group_width  # official rounding (spec pitfall 8)
        self.scale = qk_scale or (self.dim_v // num_heads) ** -0.5
        self.lam, self.gamma, self.impl, self.tile = lam, gamma, impl, tile

        self.pre_proj = nn.Conv2d(dim, self.dim_qk * 2 + self.dim_v, 1, bias=qkv_bias)
        self.attn = nn.Sequential(
            nn.Conv2d(self.dim_qk, self.dim_qk, kernel_size, padding=kernel_size // 2 * dilation,
                      dilation=dilation, groups=self.dim_qk // group_width),
            nn.GELU(),
            nn.Conv2d(self.dim_qk, kernel_size ** 2 * num_heads, 1, groups=groups))
        self.ghost_head = make_ghost_head(self.dim_v, kernel_size, lam, gamma)
        self.attn_drop = nn.Dropout(attn_drop)
        self.post_proj = nn.Linear(self.dim_v, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def attention_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, H, W, C) -> (v (B, C_v, H, W), A (B, G, k*k, H, W) soft-maxed over k*k)."""
        b, h, w, _ = x.shape
        q, k, v = self.pre_proj(x.permute(0, 3, 1, 2)).split([self.dim_qk, self.dim_qk, self.dim_v], 1)
        logits = self.attn(q * k * self.scale)  # Hadamard product of the same pixel's q and k
        attn = logits.reshape(b, self.num_heads, self.kernel_size ** 2, h, w).softmax(2)
        return v, attn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, H, W, C) -> (B, H, W, C)."""
        v, attn = self.attention_maps(x)
        mul, add = ghost_terms(self.ghost_head, self.lam, self.gamma)
        y = elsa_aggregate(v, self.attn_drop(attn), mul, add, self.kernel_size, self.dilation,
                           self.impl, self.tile)
        return self.proj_drop(self.post_proj(y.permute(0, 2, 3, 1)))


class LocalSelfAttention(nn.Module):
    """Plain local self-attention (LSA baseline): softmax_j(q_p . k_{p+o_j} / sqrt(c) + b_{g,j}) v.

    x (B, H, W, C) -> (B, H, W, C). Neighbours outside the image are masked (not zero-padded).
    ``lam``/``gamma`` (ablations only, default off) add ELSA's ghost head to these maps:
    ``y = sum_j (M^lam A + gamma Bg)_j v_{p+o_j}``; lam 0, gamma 1 is LSA plus a k x k depthwise conv of v.
    """

    def __init__(self, dim: int, num_heads: int, kernel_size: int = 5, dilation: int = 1,
                 qkv_bias: bool = True, attn_drop: float = 0., proj_drop: float = 0., tile: int = 7,
                 lam: float = 0., gamma: float = 0.):
        super().__init__()
        if dim % num_heads or kernel_size % 2 == 0:
            raise ValueError(f"LocalSelfAttention: need dim % num_heads == 0 and odd kernel_size, "
                             f"got dim={dim}, num_heads={num_heads}, kernel_size={kernel_size}")
        self.num_heads, self.kernel_size, self.dilation, self.tile = num_heads, kernel_size, dilation, tile
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.relative_position_bias = nn.Parameter(trunc_normal_(torch.zeros(num_heads, kernel_size ** 2), std=.02))
        # ablations: ELSA's ghost head on the dot-product maps (lam 0, gamma 1 = LSA + depthwise conv of v)
        self.lam, self.gamma = lam, gamma
        self.ghost_head = make_ghost_head(dim, kernel_size, lam, gamma)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        g, kk = self.num_heads, self.kernel_size ** 2
        q, k, v = self.qkv(x).permute(0, 3, 1, 2).reshape(b, 3, g, c // g, h, w).unbind(1)
        logits = local_logits_tiled(q * self.scale, k, self.kernel_size, self.dilation, self.tile)
        logits = logits + self.relative_position_bias.reshape(1, g, kk, 1, 1)
        valid = valid_neighbours(h, w, self.kernel_size, self.dilation, x.device)
        attn = logits.masked_fill(~valid, float("-inf")).softmax(2)
        if self.ghost_head is None:
            y = local_attention_tiled(v.reshape(b, c, h, w), self.attn_drop(attn), self.kernel_size,
                                      self.dilation, self.tile)
        else:
            mul, add = ghost_terms(self.ghost_head, self.lam, self.gamma)
            y = elsa_aggregate(v.reshape(b, c, h, w), self.attn_drop(attn), mul, add, self.kernel_size,
                               self.dilation, "auto", self.tile)
        return self.proj_drop(self.proj(y.permute(0, 2, 3, 1)))


class ELSABlock(nn.Module):
    """Pre-norm block ``x + DP(attn(LN(x)))``, ``x + DP(MLP(LN(x)))`` on NHWC input; no windows, no
    shift, no relative-position table (position lives in the k x k conv). ``attn_type``: elsa | lsa;
    ``ghost_on_lsa`` gives the LSA mixer the ghost head of ``lam``/``gamma`` too (ablations)."""

    def __init__(self, dim: int, num_heads: int, kernel_size: int = 7, mlp_ratio: float = 4.,
                 qkv_bias: bool = True, qk_scale: float | None = 1, proj_drop: float = 0.,
                 attn_drop: float = 0., drop_path: float = 0., lam: float = 0., gamma: float = 1.,
                 dilation: int = 1, group_width: int = 8, attn_type: str = "elsa", impl: str = "auto",
                 tile: int = 7, norm_layer: type[nn.Module] = nn.LayerNorm, ghost_on_lsa: bool = False):
        super().__init__()
        self.norm1 = norm_layer(dim)
        if attn_type == "elsa":
            # The official ELSABlock passes no proj_drop to ELSA (only the MLP gets ``drop``).
            self.attn: nn.Module = ELSA(dim, num_heads, kernel_size=kernel_size, dilation=dilation,
                                        qkv_bias=qkv_bias, qk_scale=qk_scale, attn_drop=attn_drop,
                                        group_width=group_width, lam=lam, gamma=gamma, impl=impl, tile=tile)
        elif attn_type == "lsa":  # plain LSA, or LSA with ghost terms when ``ghost_on_lsa``
            glam, ggamma = (lam, gamma) if ghost_on_lsa else (0., 0.)
            self.attn = LocalSelfAttention(dim, num_heads, kernel_size, dilation, qkv_bias, attn_drop,
                                           proj_drop, tile, glam, ggamma)
        else:
            raise ValueError(f"ELSABlock: attn_type must be 'elsa' or 'lsa', got '{attn_type}'")
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, H, W, C) -> (B, H, W, C)."""
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def _init_linear(m: nn.Module) -> None:
    # timm/ELSA ViT init for Linear; convs keep PyTorch's default init, as in the official model.
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def elsa_swin(depths: tuple[int, ...] = (2, 2, 6, 2), num_heads: tuple[int, ...] = (3, 6, 12, 24),
              elsa_kernel: int = 7, group_width: int = 8, lam: float = 0., gamma: float = 1.,
              elsa_stages: tuple[int, ...] | None = None, attn_type: str = "elsa", impl: str = "auto",
              tile: int = 7, qk_scale: float | None = 1, drop_path_rate: float = 0.1,
              proj_drop_rate: float = 0., attn_drop_rate: float = 0., mlp_ratio: float = 4.,
              qkv_bias: bool = True, ghost_on_lsa: bool = False, **swin_kwargs: Any) -> SwinTransformer:
    """A timm ``SwinTransformer`` whose blocks in ``elsa_stages`` (default: all but the last stage, as
    released) are :class:`ELSABlock`; the other stages keep (shifted) window attention.

    Drop-path rates follow timm/official: linspace over all blocks. Key layout: timm's (downsample at
    the start of a stage, ``head.fc``); ELSA blocks keep the official names. See ``elsa.checkpoint``.
    """
    model = SwinTransformer(depths=depths, num_heads=num_heads, drop_path_rate=drop_path_rate,
                            proj_drop_rate=proj_drop_rate, attn_drop_rate=attn_drop_rate,
                            mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, **swin_kwargs)
    stages = tuple(range(len(depths) - 1)) if elsa_stages is None else tuple(elsa_stages)
    dpr = calculate_drop_path_rates(drop_path_rate, list(depths), stagewise=True)
    for i in stages:
        if not 0 <= i < len(depths):
            raise ValueError(f"elsa_stages: stage {i} does not exist (model has {len(depths)} stages)")
        dim = model.layers[i].blocks[0].norm1.normalized_shape[0]
        blocks = [ELSABlock(dim, num_heads[i], elsa_kernel, mlp_ratio, qkv_bias, qk_scale, proj_drop_rate,
                            attn_drop_rate, dpr[i][j], lam, gamma, 1, group_width, attn_type, impl, tile,
                            ghost_on_lsa=ghost_on_lsa)
                  for j in range(depths[i])]
        for b in blocks:
            b.apply(_init_linear)
        model.layers[i].blocks = nn.Sequential(*blocks)
    return model


_TIMM_FACTORY_KEYS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


def no_pretrained(pretrained: bool, name: str, kwargs: dict) -> None:
    """Refuse ``pretrained=True`` (nothing downloads here) and drop timm's factory-only keys."""
    for k in _TIMM_FACTORY_KEYS:  # passed by timm.create_model; weights are never fetched here
        kwargs.pop(k, None)
    if pretrained:
        raise ValueError(f"{name}: nothing is downloaded; build with pretrained=False and load the released "
                         f"checkpoint with elsa.checkpoint.load_official_checkpoint(model, path)")


def build_timm(builder: Any, variant: str, pretrained: bool, default_kw: dict, kwargs: dict,
               num_stages: int) -> nn.Module:
    """Build through timm's ``build_model_with_cfg`` so ``features_only=True`` works: it then returns a
    ``FeatureGetterNet`` over the model's ``forward_intermediates`` (NCHW maps, one per stage by default,
    ``feature_info`` with channels and strides; ``out_indices`` picks stages)."""
    no_pretrained(pretrained, variant, kwargs)
    return build_model_with_cfg(builder, variant, False, feature_cfg=dict(
        feature_cls="getter", out_indices=tuple(range(num_stages))), **{**default_kw, **kwargs})


def _cfg(size: int = 224, **kw: Any) -> dict:
    # No url: the released weights come from Google Drive/Baidu and are loaded with elsa.checkpoint.
    return {"url": "", "num_classes": 1000, "input_size": (3, size, size), "pool_size": None,
            "crop_pct": .9, "interpolation": "bicubic", "fixed_input_size": True,
            "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD, "first_conv": "patch_embed.proj",
            "classifier": "head.fc", **kw}


default_cfgs = generate_default_cfgs({"elsa_swin_tiny": _cfg(), "elsa_swin_small": _cfg(),
                                      "elsa_swin_base": _cfg()})


@register_model
def elsa_swin_tiny(pretrained: bool = False, **kwargs: Any) -> SwinTransformer:
    """ELSA-Swin-T: Swin-T with ELSA in stages 0-2 (k 7, group width 4, lam 0, gamma 1); 29.1M params."""
    kw = dict(patch_size=4, window_size=7, embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24),
              group_width=4)
    return build_timm(elsa_swin, "elsa_swin_tiny", pretrained, kw, kwargs, 4)


@register_model
def elsa_swin_small(pretrained: bool = False, **kwargs: Any) -> SwinTransformer:
    """ELSA-Swin-S (group width 8); 52.9M params."""
    kw = dict(patch_size=4, window_size=7, embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24),
              group_width=8)
    return build_timm(elsa_swin, "elsa_swin_small", pretrained, kw, kwargs, 4)


@register_model
def elsa_swin_base(pretrained: bool = False, **kwargs: Any) -> SwinTransformer:
    """ELSA-Swin-B (group width 8); 92.7M params."""
    kw = dict(patch_size=4, window_size=7, embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32),
              group_width=8)
    return build_timm(elsa_swin, "elsa_swin_base", pretrained, kw, kwargs, 4)
