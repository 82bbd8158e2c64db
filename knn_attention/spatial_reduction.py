"""k-NN attention for the spatial-reduction transformers of timm: PVT-v2 and Twins (PCPVT, SVT).

These models do not attend over their N query tokens: the keys and values come from a *reduced* set
of M tokens. KVT's rule "keep the k largest scores of each query row" applies unchanged, with the
top-k taken over those M keys (spec section 2: "keys are N/R^2, so k must be <= the reduced key count
per stage")::

    q = x W_q                                   (B, h, N, d)   one query per token, N = H*W
    x_r = reduce(x)                             (B, M, C)      PVT-v2 / Twins GSA: conv k=s=R + LayerNorm
                                                               (M = H/R * W/R); PVT-v2 linear: 7x7 pool
                                                               + 1x1 conv + LN + GELU (M = 49)
    k, v = x_r W_kv                             (B, h, M, d)
    out = softmax(keep the k largest of q k^T / sqrt(d) per row, -inf elsewhere) v

Twins' locally-grouped attention (LSA, SVT's odd blocks) attends inside ws x ws windows, so there
M = ws^2 per window (zero-padded windows included, as in timm's dense form), like Swin.

Every module keeps the parameters, buffers and state-dict keys of the timm module it replaces (the
swap only changes the class, :func:`knnify_spatial_reduction`), so dense PVT-v2/Twins weights load
unchanged and ``topk = M`` gives the dense model's outputs (tested). ``topk``: an int count (an error
naming k and M when a stage has fewer keys: at 224 px every PVT-v2/Twins stage has M = 49) or a ratio
of M (default 0.5, a reconstruction: the paper's k for these models is not in the released code).

Usage::

    import timm, knn_attention      # registers knn_pvt_v2_b{0..5}, knn_pvt_v2_b2_li, knn_twins_*
    m = timm.create_model("knn_pvt_v2_b2", topk=0.5)          # 24 of the 49 reduced keys per query
    m = timm.create_model("knn_twins_svt_small", topk=[...])  # one value per attention module, in order
"""
from __future__ import annotations

import torch
from timm.models import pvt_v2, twins
from torch import nn

from .model import KNNSelection, TopK, knn_attention


def _reduced_kv(attn: nn.Module, x: torch.Tensor, feat_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values (B, h, M, d) of a PVT-v2 ``Attention`` or a Twins ``GlobalSubSampleAttn``, computed
    as timm does: optional adaptive pool (PVT-v2 linear), conv ``sr`` (k = s = R), LayerNorm, optional GELU."""
    B, N, C = x.shape
    pool, sr = getattr(attn, "pool", None), attn.sr
    if pool is not None or sr is not None:
        x = x.permute(0, 2, 1).reshape(B, C, *feat_size)
        if pool is not None:
            x = pool(x)
        x = sr(x).reshape(B, C, -1).permute(0, 2, 1)
        x = attn.norm(x)
        if getattr(attn, "act", None) is not None:
            x = attn.act(x)
    kv = attn.kv(x).reshape(B, -1, 2, attn.num_heads, C // attn.num_heads).permute(2, 0, 3, 1, 4)
    return kv.unbind(0)


def _global_forward(attn, x: torch.Tensor, feat_size) -> torch.Tensor:
    B, N, C = x.shape
    q = attn.q(x).reshape(B, N, attn.num_heads, C // attn.num_heads).permute(0, 2, 1, 3)  # (B, h, N, d)
    k, v = _reduced_kv(attn, x, tuple(feat_size))  # (B, h, M, d)
    x = knn_attention(q, k, v, attn.topk, attn.scale, None, attn.attn_drop, attn.impl)
    x = x.transpose(1, 2).reshape(B, N, C)
    return attn.proj_drop(attn.proj(x))


class KNNPvtV2Attention(KNNSelection, pvt_v2.Attention):
    """PVT-v2 spatial-reduction attention (``sr_ratio`` R, or the linear 7x7-pool variant) with the top-k
    over the M reduced keys. Same arguments and keys as ``timm.models.pvt_v2.Attention``."""

    def __init__(self, dim: int, num_heads: int = 8, *, topk: TopK = 0.5, impl: str = "fast", **kwargs):
        super().__init__(dim, num_heads, **kwargs)
        self._init_knn(topk, impl)

    def forward(self, x: torch.Tensor, feat_size: list[int]) -> torch.Tensor:
        """``x``: (B, N, C) with N = H*W, ``feat_size`` = (H, W) -> (B, N, C)."""
        return _global_forward(self, x, feat_size)


class KNNGlobalSubSampleAttn(KNNSelection, twins.GlobalSubSampleAttn):
    """Twins GSA (global sub-sampled attention, conv k=s=R on the keys' side) with the top-k over the M
    reduced keys. Same arguments and keys as ``timm.models.twins.GlobalSubSampleAttn``."""

    def __init__(self, dim: int, num_heads: int = 8, *, topk: TopK = 0.5, impl: str = "fast", **kwargs):
        super().__init__(dim, num_heads, **kwargs)
        self._init_knn(topk, impl)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """``x``: (B, N, C), ``size`` = (H, W) -> (B, N, C)."""
        return _global_forward(self, x, size)


class KNNLocallyGroupedAttn(KNNSelection, twins.LocallyGroupedAttn):
    """Twins LSA (attention inside ws x ws windows, zero padding) with the top-k over the ws^2 keys of
    each window. Same arguments and keys as ``timm.models.twins.LocallyGroupedAttn``."""

    def __init__(self, dim: int, num_heads: int = 8, *, topk: TopK = 0.5, impl: str = "fast", **kwargs):
        super().__init__(dim, num_heads, **kwargs)
        self._init_knn(topk, impl)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """``x``: (B, N, C), ``size`` = (H, W) -> (B, N, C); windows as in timm's ``forward`` (padding form)."""
        B, N, C = x.shape
        H, W = size
        ws, h = self.ws, self.num_heads
        x = x.view(B, H, W, C)
        pad_r, pad_b = (ws - W % ws) % ws, (ws - H % ws) % ws
        x = nn.functional.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        _, Hp, Wp, _ = x.shape
        _h, _w = Hp // ws, Wp // ws
        x = x.reshape(B, _h, ws, _w, ws, C).transpose(2, 3)
        qkv = self.qkv(x).reshape(B, _h * _w, ws * ws, 3, h, C // h).permute(3, 0, 1, 4, 2, 5)
        q, k, v = (t.reshape(B * _h * _w, h, ws * ws, C // h) for t in qkv.unbind(0))  # windows as batch
        x = knn_attention(q, k, v, self.topk, self.scale, None, self.attn_drop, self.impl)
        x = x.reshape(B, _h * _w, h, ws * ws, C // h)
        x = x.transpose(2, 3).reshape(B, _h, _w, ws, ws, C)
        x = x.transpose(2, 3).reshape(B, Hp, Wp, C)
        if pad_r > 0 or pad_b > 0:
            x = x[:, :H, :W, :].contiguous()
        return self.proj_drop(self.proj(x.reshape(B, N, C)))


# dense timm class -> its k-NN twin (exact types: a subclass someone else made is left alone)
KNN_SPATIAL_REDUCTION = {
    pvt_v2.Attention: KNNPvtV2Attention,
    twins.GlobalSubSampleAttn: KNNGlobalSubSampleAttn,
    twins.LocallyGroupedAttn: KNNLocallyGroupedAttn,
}


def knnify_spatial_reduction(model: nn.Module, topk: TopK = 0.5, impl: str = "fast") -> nn.Module:
    """Swap every PVT-v2 ``Attention`` and Twins GSA/LSA module of ``model`` for its k-NN form, in place.

    Only the class changes: the submodules (``q``, ``kv``/``qkv``, ``sr``, ``norm``, ``proj``, ...) and
    their weights stay, so a dense model's state dict loads into the result and vice versa.
    """
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            cls = KNN_SPATIAL_REDUCTION.get(type(child))
            if cls is not None:
                new = cls.__new__(cls)
                new.__dict__.update(child.__dict__)
                new._init_knn(topk, impl)
                setattr(parent, name, new)
    return model


__all__ = ["KNNPvtV2Attention", "KNNGlobalSubSampleAttn", "KNNLocallyGroupedAttn", "KNN_SPATIAL_REDUCTION",
           "knnify_spatial_reduction"]
