"""ELSA-VOLO: timm's VOLO with its Outlooker blocks (stage 0) replaced by ELSA blocks.

**A reconstruction.** The paper's headline ImageNet number is ELSA-VOLO-D5 at 512 px (87.2 top-1, VOLO-D5
87.1), but its code and weights were never released (damo-cv/ELSA issue #7, open). What is known: the
official ``ELSABlock`` defaults (``cls/models/elsa/elsa.py``: kernel 5, lam = gamma = 1, group width 8,
qkv_bias False, qk_scale 1, mlp_ratio 3) mirror VOLO's Outlooker block and are *not* what the released
Swin models use, so they are the likely VOLO setting (spec section 2, pitfall 3). Every one of them is a
keyword here (``elsa_kernel``, ``lam``, ``gamma``, ``group_width``, ``elsa_qkv_bias``) and the defaults
below are those module defaults, **unverified**.

What is swapped and what is kept (VOLO, timm ``volo.py``):

* ``model.network[0]`` -- the Outlooker stage (outlook attention at stride 2, kernel 3) -- becomes
  :class:`elsa.model.ELSABlock` s of the same width, heads, MLP ratio and drop-path rate, on the same
  NHWC tokens (stride 8, e.g. 28 x 28 at 224 px). timm hard-codes ``Outlooker`` in ``outlooker_blocks``,
  so the swap happens after construction, in ``__init__`` (``ElsaVOLO``).
* Everything else is VOLO's: conv stem + patch embedding, downsample, transformer stages, class-attention
  post layers, the token-labelling aux head (``use_aux_head``). Token labelling itself is a training
  option (``train.token_label``, ``elsa.token_label``; on in the ImageNet configs, as VOLO trains): with it
  a training-mode call returns VOLO's dense outputs (``TokenLabelForward``).

``features_only=True`` works through timm's ``FeatureGetterNet`` (VOLO's ``forward_intermediates``):
four NCHW maps at strides 8, 16, 16, 16 (VOLO has no stride-32 stage).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from timm.models import generate_default_cfgs, register_model
from timm.models.volo import VOLO, OutlookAttention, Outlooker
from torch import nn

from .checkpoint import engine_state
from .model import ELSABlock, _cfg, _init_linear, build_timm
from .token_label import volo_token_label_forward

# VOLO sizes (timm ``volo_d*`` / sail-sg/volo): layers, embed_dims, num_heads (+ D5's mlp_ratio, stem)
VOLO_SIZES: dict[str, dict[str, Any]] = {
    "d1": dict(layers=(4, 4, 8, 2), embed_dims=(192, 384, 384, 384), num_heads=(6, 12, 12, 12)),
    "d2": dict(layers=(6, 4, 10, 4), embed_dims=(256, 512, 512, 512), num_heads=(8, 16, 16, 16)),
    "d3": dict(layers=(8, 8, 16, 4), embed_dims=(256, 512, 512, 512), num_heads=(8, 16, 16, 16)),
    "d4": dict(layers=(8, 8, 16, 4), embed_dims=(384, 768, 768, 768), num_heads=(12, 16, 16, 16)),
    "d5": dict(layers=(12, 12, 20, 4), embed_dims=(384, 768, 768, 768), num_heads=(12, 16, 16, 16),
               mlp_ratio=4, stem_hidden_dim=128),
}
# the resolutions VOLO released for each size (224 trained, the others fine-tuned from it)
VOLO_RESOLUTIONS = {"d1": (224, 384), "d2": (224, 384), "d3": (224, 448), "d4": (224, 448), "d5": (224, 448, 512)}


class TokenLabelForward:
    """Mixin for timm ``VOLO``: with ``token_label_train`` set, a training-mode call returns the official
    dense outputs ``(class logits, aux logits, MixToken box)`` (``elsa.token_label``), so token labelling
    runs through ``model(x)`` (and DDP); evaluation and the default stay timm's ``forward``."""

    token_label_train: bool = False
    mix_token: bool = True

    def forward(self, x):
        if self.training and self.token_label_train:
            return volo_token_label_forward(self, x, self.mix_token)
        return super().forward(x)


class TokenLabelVOLO(TokenLabelForward, VOLO):
    """timm's VOLO with the token-labelling training forward (the ``volo`` baseline under ``train.token_label``)."""


class ElsaVOLO(TokenLabelForward, VOLO):
    """VOLO whose Outlooker stage(s) are ELSA blocks; takes VOLO's arguments plus the ELSA switches.

    Args (besides VOLO's):
        elsa_kernel: k of the ELSA blocks (official module default 5; VOLO's outlook kernel is 3).
        lam, gamma: ghost-head exponent and additive weight (module defaults 1, 1; ELSA-Swin used 0, 1).
        group_width: channels per group of the k x k attention-generator conv (module default 8).
        elsa_qkv_bias: bias of ELSA's ``pre_proj`` (module default False, like VOLO's ``qkv_bias``).
        elsa_mixer: ``elsa``, or ``lsa`` (plain local self-attention, for comparisons).
        impl, tile: aggregation form of ``elsa.op`` (same output; ``auto`` picks the fastest valid one).
    """

    def __init__(self, *args: Any, elsa_kernel: int = 5, lam: float = 1., gamma: float = 1.,
                 group_width: int = 8, elsa_qkv_bias: bool = False, elsa_mixer: str = "elsa",
                 impl: str = "auto", tile: int = 7, **kwargs: Any):
        super().__init__(*args, **kwargs)
        outlook = kwargs.get("outlook_attention", (True, False, False, False))
        mlp = kwargs.get("mlp_ratio", 3.)
        layers, dims, heads = kwargs["layers"], kwargs["embed_dims"], kwargs["num_heads"]
        attn_drop = kwargs.get("attn_drop_rate", 0.)
        net_idx = 0
        for i in range(len(layers)):
            if outlook[i]:
                old = self.network[net_idx]
                blocks = []
                for blk in old:  # keep each Outlooker's drop-path rate (VOLO gives the outlooker stage 0)
                    dp = getattr(blk.drop_path1, "drop_prob", 0.)
                    b = ELSABlock(dims[i], heads[i], elsa_kernel, mlp if isinstance(mlp, (int, float)) else mlp[i],
                                  elsa_qkv_bias, 1, 0., attn_drop, dp, lam, gamma, 1, group_width, elsa_mixer,
                                  impl, tile)
                    b.apply(_init_linear)
                    blocks.append(b)
                self.network[net_idx] = nn.Sequential(*blocks)
            net_idx += 2 if kwargs.get("downsamples", (True, False, False, False))[i] else 1


def set_outlook_kernel(model: VOLO, kernel: int) -> None:
    """Give every Outlooker block of ``model`` outlook attention with a ``kernel`` x ``kernel`` window
    (padding ``kernel // 2``, same stride, heads and bias; freshly initialised as VOLO initialises it).
    timm fixes the outlook kernel at 3 (VOLO's value); this is the ``volo`` row's kernel switch."""
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"outlook kernel must be a positive odd number, got {kernel}")
    for stage in model.network:
        for blk in stage.children() if isinstance(stage, nn.Sequential) else ():
            if isinstance(blk, Outlooker):
                old = blk.attn
                blk.attn = OutlookAttention(old.v.in_features, old.num_heads, kernel, kernel // 2, old.stride,
                                            qkv_bias=old.v.bias is not None, attn_drop=old.attn_drop.p,
                                            proj_drop=old.proj_drop.p)
                blk.attn.apply(model._init_weights)


def load_run_weights(model: VOLO, path: str | Path, use_ema: bool = False) -> None:
    """Initialise from one of our (ELSA-)VOLO runs (engine ``last.pt`` / ``best.pt``) for VOLO's fine-tuning
    step at a higher resolution: the (B, H, W, C) position embedding is resampled to this model's grid
    (timm's ``resample_abs_pos_embed_nhwc``, bicubic), everything else loads strictly."""
    from timm.layers import resample_abs_pos_embed_nhwc

    state = engine_state(path)
    if state is None:
        raise ValueError(f"{path}: not a checkpoint of our engine (no 'model'/'optimizer'); no ELSA-VOLO "
                         f"weights were ever released")
    sd = state["ema"] if use_ema else state["model"]
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    pe = sd.get("pos_embed")
    if pe is not None and pe.shape != model.pos_embed.shape:
        sd["pos_embed"] = resample_abs_pos_embed_nhwc(pe, list(model.pos_embed.shape[1:3]))
    model.load_state_dict(sd)


def elsa_volo(size: str = "d1", img_size: int = 224, **kwargs: Any) -> ElsaVOLO:
    """An ELSA-VOLO of VOLO size ``d1``..``d5`` (no registry, no pretrained config)."""
    if size not in VOLO_SIZES:
        raise ValueError(f"elsa_volo: size must be one of {sorted(VOLO_SIZES)}, got '{size}'")
    return ElsaVOLO(img_size=img_size, **{**VOLO_SIZES[size], **kwargs})


def _volo_cfg(size: int) -> dict:
    return _cfg(size, crop_pct=.96 if size == 224 else 1.0, first_conv="patch_embed.conv.0",
                classifier=("head", "aux_head"))


default_cfgs = generate_default_cfgs({f"elsa_volo_{d}_{r}": _volo_cfg(r)
                                      for d, rs in VOLO_RESOLUTIONS.items() for r in rs})


def _create(size: str, res: int, pretrained: bool, kwargs: dict) -> ElsaVOLO:
    return build_timm(ElsaVOLO, f"elsa_volo_{size}_{res}", pretrained, dict(VOLO_SIZES[size]), kwargs, 4)


@register_model
def elsa_volo_d1_224(pretrained: bool = False, **kwargs: Any) -> ElsaVOLO:
    """ELSA-VOLO-D1 at 224 px (reconstruction; VOLO-D1 26.6M)."""
    return _create("d1", 224, pretrained, kwargs)


@register_model
def elsa_volo_d1_384(pretrained: bool = False, **kwargs: Any) -> ElsaVOLO:
    """ELSA-VOLO-D1 at 384 px."""
    return _create("d1", 384, pretrained, kwargs)


@register_model
def elsa_volo_d2_224(pretrained: bool = False, **kwargs: Any) -> ElsaVOLO:
    """ELSA-VOLO-D2 at 224 px (VOLO-D2 58.7M)."""
    return _create("d2", 224, pretrained, kwargs)


@register_model
def elsa_volo_d2_384(pretrained: bool = False, **kwargs: Any) -> ElsaVOLO:
    """ELSA-VOLO-D2 at 384 px."""
    return _create("d2", 384, pretrained, kwargs)


@register_model
def elsa_volo_d3_224(pretrained: bool = False, **kwargs: Any) -> ElsaVOLO:
    """ELSA-VOLO-D3 at 224 px (VOLO-D3 86.3M)."""
    return _create("d3", 224, pretrained, kwargs)


@register_model
def elsa_volo_d3_448(pretrained: bool = False, **kwargs: Any) -> ElsaVOLO:
    """ELSA-VOLO-D3 at 448 px."""
    return _create("d3", 448, pretrained, kwargs)


@register_model
def elsa_volo_d4_224(pretrained: bool = False, **kwargs: Any) -> ElsaVOLO:
    """ELSA-VOLO-D4 at 224 px (VOLO-D4 192.9M)."""
    return _create("d4", 224, pretrained, kwargs)


@register_model
def elsa_volo_d4_448(pretrained: bool = False, **kwargs: Any) -> ElsaVOLO:
    """ELSA-VOLO-D4 at 448 px."""
    return _create("d4", 448, pretrained, kwargs)


@register_model
def elsa_volo_d5_224(pretrained: bool = False, **kwargs: Any) -> ElsaVOLO:
    """ELSA-VOLO-D5 at 224 px (VOLO-D5 295.5M)."""
    return _create("d5", 224, pretrained, kwargs)


@register_model
def elsa_volo_d5_448(pretrained: bool = False, **kwargs: Any) -> ElsaVOLO:
    """ELSA-VOLO-D5 at 448 px."""
    return _create("d5", 448, pretrained, kwargs)


@register_model
def elsa_volo_d5_512(pretrained: bool = False, **kwargs: Any) -> ElsaVOLO:
    """ELSA-VOLO-D5 at 512 px: the paper's headline model (87.2 top-1, unreleased)."""
    return _create("d5", 512, pretrained, kwargs)
