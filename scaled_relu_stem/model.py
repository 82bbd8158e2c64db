"""Scaled-ReLU conv stem for ViTs (Wang et al., "Scaled ReLU Matters for Training Vision Transformers",
AAAI 2022, arXiv 2109.03810).

The paper's claim: what stabilises ViT training in a conv stem is the **scaled ReLU**, i.e. BatchNorm
followed by ReLU after each convolution,

    y_c = ReLU(gamma_c * (x_c - mu_c) / sigma_c + beta_c)          (per channel c)

a ReLU whose input slope (gamma/sigma) and threshold (beta) are normalised and learned per channel --
not the convolutions alone. (A ReLU multiplied by one scalar is a different thing.)

No official code exists. The stem layout is a **reconstruction** (spec section 2): the layout that
same-group code (TransReID-SSL ``PatchEmbed_VOLO``) and a third-party "conv stem from 2109.03810" both use,
which is also the LV-ViT / VOLO stem:

    layer 1  conv 7x7 s2 p3 (no bias) -> BN -> ReLU     (B, 3, 224, 224) -> (B, 64, 112, 112)
    layer 2  conv 3x3 s1 p1 (no bias) -> BN -> ReLU     -> (B, 64, 112, 112)
    layer 3  conv 3x3 s1 p1 (no bias) -> BN -> ReLU     -> (B, 64, 112, 112)
    proj     conv k=s=patch/2 (bias)                    -> (B, D, 14, 14) -> tokens (B, 196, D)

Every uncertain choice is a field of :class:`StemConfig`: ``layout`` (``volo`` above, ``xiao`` =
Xiao et al. 2021 early convolutions, ``custom``, or ``patchify``), ``norm`` (``bn`` | ``none``),
``act`` (``relu`` | ``none``), ``hidden_dim``, ``first_stride``. The ablations are ``norm='none'``
(conv keeps its bias so the stem keeps an affine shift, spec pitfall 5), ``act='none'`` (BN kept) and
both. Token count, class token, pos-embed and all blocks are untouched: the stem's total stride equals
the ViT's ``patch_size``, so the token grid is the patchify grid (spec section 3's trap cannot happen:
:class:`ConvStemEmbed` reads the ViT's ``patch_size`` as the *token* patch size and checks the grid).

Usage::

    import timm, scaled_relu_stem.model  # registers deit_{tiny,small,base}_srstem_patch16_224
    m = timm.create_model("deit_small_srstem_patch16_224", num_classes=1000)
    m = create_stem_vit(StemConfig(layout="volo", act="none"), img_size=32, patch_size=4, embed_dim=96,
                        depth=6, num_heads=3, num_classes=10, in_chans=1)
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from timm.layers import Format, PatchEmbed, nchw_to, to_2tuple
from timm.models import build_model_with_cfg, generate_default_cfgs, get_pretrained_cfg, register_model
from timm.models.vision_transformer import VisionTransformer
from torch import nn

# timm's register_model appends the registered names to __all__
__all__ = ["LAYOUTS", "StemConfig", "ConvStemEmbed", "stem_layers", "conv_norm_act", "stem_embed_layer",
           "create_stem_vit", "stem_summary", "load_deit_weights"]

LAYOUTS = ("patchify", "volo", "xiao", "custom")


@dataclass
class StemConfig:
    """Which stem replaces ViT's patchify layer; every reconstructed choice is a named switch."""

    layout: str = "volo"  # patchify | volo (paper, reconstructed) | xiao (Xiao et al. 2021) | custom
    norm: str = "bn"  # bn | none -- the "scaled" part; 'none' gives the convs a bias instead
    act: str = "relu"  # relu | none
    hidden_dim: int = 64  # volo: width of the three convs (VOLO-D5 uses 128)
    first_stride: int = 2  # volo: stride of the 7x7 conv; the projection takes the rest of patch_size
    # custom layout (and explicit overrides of volo/xiao): per-conv widths, kernels, strides
    channels: list[int] = field(default_factory=list)
    kernels: list[int] = field(default_factory=list)
    strides: list[int] = field(default_factory=list)
    proj_init: str = "default"  # default (PyTorch) | xiao: N(0, sqrt(2 / (k*k*out))) as in pycls


def stem_layers(cfg: StemConfig, patch_size: int, embed_dim: int) -> tuple[list[int], list[int], list[int]]:
    """(channels, kernels, strides) of the conv stack before the projection, for one layout.

    ``volo``: 7x7/s, 3x3/1, 3x3/1 at ``hidden_dim`` (s = ``first_stride``). ``xiao``: log2(patch_size)
    3x3 stride-2 convs with widths D/2^(n-1), ..., D/2, D (48-96-192-384 for D=384, p=16), then the
    projection is a 1x1 conv (pycls ``ViTStemConv``).
    """
    if cfg.layout == "volo":
        ch, k, s = [cfg.hidden_dim] * 3, [7, 3, 3], [cfg.first_stride, 1, 1]
    elif cfg.layout == "xiao":
        n = int(round(math.log2(patch_size)))
        if 2 ** n != patch_size:
            raise ValueError(f"stem.layout=xiao needs a power-of-two patch_size, got {patch_size}")
        ch, k, s = [embed_dim // 2 ** (n - 1 - i) for i in range(n)], [3] * n, [2] * n
    elif cfg.layout == "custom":
        ch, k, s = list(cfg.channels), list(cfg.kernels), list(cfg.strides)
        if not ch or not (len(ch) == len(k) == len(s)):
            raise ValueError("stem.layout=custom needs stem.channels, stem.kernels and stem.strides of one "
                             f"equal, non-zero length; got {cfg.channels}, {cfg.kernels}, {cfg.strides}")
    else:
        raise ValueError(f"stem.layout must be one of {', '.join(LAYOUTS)}, got '{cfg.layout}'")
    # explicit lists override a preset's entries
    ch = list(cfg.channels) or ch
    k = list(cfg.kernels) or k
    s = list(cfg.strides) or s
    if not (len(ch) == len(k) == len(s)):
        raise ValueError(f"stem.channels/kernels/strides lengths differ: {ch}, {k}, {s}")
    return ch, k, s


def conv_norm_act(cin: int, cout: int, kernel: int, stride: int, norm: str, act: str,
                  **dd) -> list[nn.Module]:
    """conv -> [BN] -> [ReLU]: BN + ReLU is the paper's "scaled ReLU". Without BN the conv has a bias."""
    if norm not in ("bn", "none"):
        raise ValueError(f"stem.norm must be bn | none, got '{norm}'")
    if act not in ("relu", "none"):
        raise ValueError(f"stem.act must be relu | none, got '{act}'")
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=norm == "none", **dd)]
    if norm == "bn":
        layers.append(nn.BatchNorm2d(cout, **dd))  # gamma=1, beta=0 at init (spec pitfall 2)
    if act == "relu":
        layers.append(nn.ReLU(inplace=True))
    return layers


class ConvStemEmbed(nn.Module):
    """Conv stem + projection to tokens; a drop-in ``embed_layer`` for timm's ``VisionTransformer``.

    ``patch_size`` is the **token** patch size (what the ViT passes in): the conv stack's strides times
    the projection's kernel (= stride) equals it, so ``grid_size == img_size // patch_size`` exactly as
    with patchify; construction fails with a clear error otherwise.

    Keys: ``backbone.{i}`` (conv / BN incl. running stats / ReLU, ``nn.Sequential``) and ``proj``.

    Shapes: ``(B, C_in, H, W) -> (B, H/p * W/p, D)``, or ``(B, H/p, W/p, D)`` with ``output_fmt='NHWC'``
    (timm's ``dynamic_img_size``).
    """

    def __init__(self, img_size: int | tuple[int, int] = 224, patch_size: int | tuple[int, int] = 16,
                 in_chans: int = 3, embed_dim: int = 768, bias: bool = True, dynamic_img_pad: bool = False,
                 strict_img_size: bool = True, output_fmt: str | None = None, norm_layer=None,
                 flatten: bool = True, stem: StemConfig | None = None, device=None, dtype=None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.stem_cfg = stem = stem or StemConfig()
        p = to_2tuple(patch_size)
        if p[0] != p[1]:
            raise ValueError(f"ConvStemEmbed needs a square patch_size, got {p}")
        channels, kernels, strides = stem_layers(stem, p[0], embed_dim)
        stem_stride = math.prod(strides)
        if p[0] % stem_stride:
            raise ValueError(f"patch_size {p[0]} is not divisible by the stem's total stride {stem_stride} "
                             f"(strides {strides}); the token grid would not match patchify")
        self.proj_size = p[0] // stem_stride
        layers: list[nn.Module] = []
        cin = in_chans
        for c, k, s in zip(channels, kernels, strides):
            layers += conv_norm_act(cin, c, k, s, stem.norm, stem.act, **dd)
            cin = c
        self.backbone = nn.Sequential(*layers)
        self.proj = nn.Conv2d(cin, embed_dim, self.proj_size, self.proj_size, bias=bias, **dd)
        self.norm = norm_layer(embed_dim, **dd) if norm_layer else nn.Identity()
        self._kernels, self._strides = kernels, strides
        self.patch_size = p
        self.stem_stride = stem_stride
        self.in_chans, self.embed_dim = in_chans, embed_dim
        self.output_fmt = Format(output_fmt) if output_fmt is not None else Format.NCHW
        self.flatten = flatten and output_fmt is None
        self.strict_img_size, self.dynamic_img_pad = strict_img_size, dynamic_img_pad
        self.set_input_size(img_size)

    def stack_out_size(self, size: int) -> int:
        """Spatial size after the conv stack and the projection, by conv arithmetic (no forward pass)."""
        for k, s in zip(self._kernels, self._strides):
            size = (size + 2 * (k // 2) - k) // s + 1
        return size // self.proj_size

    def set_input_size(self, img_size=None, patch_size=None) -> None:
        """Change the expected input size (the pos-embed is resampled by the ViT); patch size is fixed."""
        if patch_size is not None and to_2tuple(patch_size) != self.patch_size:
            raise ValueError(f"ConvStemEmbed cannot change patch_size {self.patch_size} -> {patch_size}: "
                             "build a new stem")
        if img_size is None:
            return
        self.img_size = to_2tuple(img_size)
        grid = tuple(self.stack_out_size(s) for s in self.img_size)
        want = tuple(s // p for s, p in zip(self.img_size, self.patch_size))
        if grid != want or any(s % p for s, p in zip(self.img_size, self.patch_size)):
            raise ValueError(f"stem gives a {grid} token grid for img_size {self.img_size}, patchify gives "
                             f"{want}: img_size must be a multiple of patch_size {self.patch_size[0]}")
        self.grid_size = grid
        self.num_patches = grid[0] * grid[1]

    def feat_ratio(self, as_scalar: bool = True):
        return max(self.patch_size) if as_scalar else self.patch_size

    def dynamic_feat_size(self, img_size: tuple[int, int]) -> tuple[int, int]:
        if self.dynamic_img_pad:
            return tuple(math.ceil(s / p) for s, p in zip(img_size, self.patch_size))
        return tuple(s // p for s, p in zip(img_size, self.patch_size))

    def init_weights(self) -> None:
        """Called by timm's ViT init. Stem convs keep PyTorch's default init; ``proj_init='xiao'`` gives
        the projection N(0, sqrt(2 / fan_out)) and a zero bias (pycls ``ViTStemConv``)."""
        if self.stem_cfg.proj_init == "xiao":
            fan_out = self.proj.kernel_size[0] * self.proj.kernel_size[1] * self.proj.out_channels
            nn.init.normal_(self.proj.weight, 0.0, math.sqrt(2.0 / fan_out))
            if self.proj.bias is not None:
                nn.init.zeros_(self.proj.bias)
        elif self.stem_cfg.proj_init != "default":
            raise ValueError(f"stem.proj_init must be default | xiao, got '{self.stem_cfg.proj_init}'")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.shape
        if self.strict_img_size and (h, w) != self.img_size:
            raise ValueError(f"input {h}x{w} does not match the stem's img_size {self.img_size}")
        if self.dynamic_img_pad:  # pad the image, so every conv sees whole patches
            ph, pw = ((p - s % p) % p for s, p in zip((h, w), self.patch_size))
            x = F.pad(x, (0, pw, 0, ph))
        x = self.proj(self.backbone(x))
        if self.flatten:
            x = x.flatten(2).transpose(1, 2)  # (B, D, h, w) -> (B, N, D)
        elif self.output_fmt != Format.NCHW:
            x = nchw_to(x, self.output_fmt)
        return self.norm(x)


def stem_embed_layer(stem: StemConfig):
    """The ``embed_layer`` for timm's ``VisionTransformer``: ``PatchEmbed`` or a :class:`ConvStemEmbed`."""
    if stem.layout == "patchify":
        return PatchEmbed
    stem_layers(stem, 16, 384)  # fail early on a bad layout / list, before the ViT is built
    conv_norm_act(1, 1, 1, 1, stem.norm, stem.act)
    return partial(ConvStemEmbed, stem=stem)


def create_stem_vit(stem: StemConfig | dict | None = None, **vit_kwargs) -> VisionTransformer:
    """A timm ``VisionTransformer`` whose patchify layer is replaced by the configured stem."""
    if isinstance(stem, dict):
        stem = StemConfig(**stem)
    stem = stem or StemConfig()
    return VisionTransformer(embed_layer=stem_embed_layer(stem), **vit_kwargs)


def stem_summary(model: nn.Module) -> dict:
    """Stem description for logs: layout, switches, parameter counts (stem vs. whole model)."""
    pe = model.patch_embed
    cfg = getattr(pe, "stem_cfg", StemConfig(layout="patchify"))
    return {**asdict(cfg), "stem_params": sum(p.numel() for p in pe.parameters()),
            "model_params": sum(p.numel() for p in model.parameters()),
            "grid_size": list(pe.grid_size)}


# ----------------------------------------------------------------------------- timm names
_DEIT = {"tiny": dict(embed_dim=192, depth=12, num_heads=3), "small": dict(embed_dim=384, depth=12, num_heads=6),
         "base": dict(embed_dim=768, depth=12, num_heads=12)}


def _deit_stem(variant: str, size: str, default_stem: StemConfig, stem=None, pretrained: bool = False, **kwargs):
    """Built through timm's ``build_model_with_cfg``: the model carries its ``pretrained_cfg`` and
    ``features_only=True`` returns timm's ``FeatureGetterNet`` (NCHW maps of the blocks ``out_indices``
    picks, default the last 3, stride 16, as for timm's ViTs)."""
    if pretrained:
        raise ValueError("no published weights for conv-stem DeiTs: build with pretrained=False and load a "
                         "DeiT checkpoint with scaled_relu_stem.model.load_deit_weights")
    kwargs.pop("cache_dir", None)  # timm.create_model's extra: nothing is downloaded here
    args = dict(img_size=224, patch_size=16, **_DEIT[size])
    args.update(kwargs)
    stem = stem if stem is not None else default_stem
    return build_model_with_cfg(partial(create_stem_vit, stem), variant, False,
                                feature_cfg=dict(out_indices=3, feature_cls="getter"), **args)


def _srstem_cfg() -> dict:
    """DeiT's evaluation settings (bicubic, crop 0.875, ImageNet mean/std), no weights (none were released);
    the first layer is the stem's first conv."""
    deit = get_pretrained_cfg("deit_small_patch16_224").to_dict()
    keep = ("input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std", "num_classes", "classifier",
            "fixed_input_size")
    return {**{k: deit[k] for k in keep if k in deit}, "url": "", "first_conv": "patch_embed.backbone.0"}


default_cfgs = generate_default_cfgs({name: _srstem_cfg() for name in (
    "deit_tiny_srstem_patch16_224", "deit_small_srstem_patch16_224", "deit_base_srstem_patch16_224",
    "deit_small_xiaostem_patch16_224")})


@register_model
def deit_tiny_srstem_patch16_224(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """DeiT-T/16 with the scaled-ReLU (conv-BN-ReLU x3, VOLO layout) stem; ``stem=`` overrides it."""
    return _deit_stem("deit_tiny_srstem_patch16_224", "tiny", StemConfig(), pretrained=pretrained, **kwargs)


@register_model
def deit_small_srstem_patch16_224(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """DeiT-S/16 with the scaled-ReLU stem (23.41M params vs 22.05M for DeiT-S, spec section 5)."""
    return _deit_stem("deit_small_srstem_patch16_224", "small", StemConfig(), pretrained=pretrained, **kwargs)


@register_model
def deit_base_srstem_patch16_224(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """DeiT-B/16 with the scaled-ReLU stem."""
    return _deit_stem("deit_base_srstem_patch16_224", "base", StemConfig(), pretrained=pretrained, **kwargs)


@register_model
def deit_small_xiaostem_patch16_224(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """Xiao et al. ViTC-4GF-style comparison: 3x3/2 convs 48-96-192-384 + BN + ReLU, 1x1 projection,
    one block removed to keep FLOPs equal (depth 11; recalled from Xiao et al., unverified)."""
    kwargs.setdefault("depth", 11)
    return _deit_stem("deit_small_xiaostem_patch16_224", "small", StemConfig(layout="xiao", proj_init="xiao"),
                      pretrained=pretrained, **kwargs)


# ----------------------------------------------------------------------------- DeiT weights
def load_deit_weights(model: VisionTransformer, path: str, num_classes_match: bool = True):
    """Load a DeiT checkpoint (``model`` key, timm ViT keys) into a conv-stem ViT.

    Every key loads except ``patch_embed.*``: the stem (``patch_embed.backbone.*`` incl. BN running
    stats) and its projection (``patch_embed.proj.*``, (D, 64, 8, 8) instead of DeiT's (D, 3, 16, 16))
    are new and keep their initialisation. With ``num_classes_match=False`` the head is skipped too.
    Returns the :class:`shared.backbones.LoadReport`; any other mismatch raises.
    """
    from shared.backbones import LoadReport, load_state_dict_file, load_weights, strip_prefix

    sd = strip_prefix(load_state_dict_file(path))
    # a DeiT *distilled* file loses its heads in load_weights' adaptation: the head is new then too
    skip = ("patch_embed.",) + (() if num_classes_match and "dist_token" not in sd else ("head.",))
    report: LoadReport = load_weights(model, path, strict=False, skip=skip, sd=sd)
    new = {k for k in model.state_dict() if k.startswith(skip)}
    other = [k for k in report.missing if k not in new] + report.unexpected
    if other:
        raise KeyError(f"{path}: keys other than {', '.join(skip)} did not match: {', '.join(other[:8])}")
    return report
