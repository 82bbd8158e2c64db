"""k-NN attention (KVT, Wang et al., ECCV 2022, arXiv 2106.00515), for timm ViT/DeiT and Swin
(PVT-v2 and Twins: :mod:`knn_attention.spatial_reduction`; a built dense model of any of them:
:func:`knn_attention.convert.dense_to_knn`).

Per head, with ``q, k, v`` of shape ``(B, h, N, d)``::

    S  = q k^T / sqrt(d)                         (B, h, N, N)  full dense scores
    S' = S[i, j] if j in topk_j(S[i, :], k)      keep the k largest scores of each query row,
         -inf     otherwise                      the rest are masked out
    P  = softmax(S')  ->  attn dropout  ->  out = P v

No new parameters: the weights of a dense ViT load unchanged. Every head and every token (CLS
included) picks its own k keys among all N keys, so "neighbours" are in feature space. Gradients
flow through the kept logits only; the selection itself is not differentiated.

Four forms of the same operation live here, side by side (tested against each other in float64):

* :func:`knn_attention_scatter` -- the official code's form (``damo-cv/KVT`` ``kNNAttention``):
  ``torch.topk`` indices scattered into a zero mask, ``where(mask, S, -inf)``.
* :func:`knn_attention_threshold` -- keep ``S >= (k-th largest of the row)`` via ``masked_fill``:
  one (B,h,N,N) tensor fewer than the official form and no scatter. It differs from the scatter
  form only when scores tie exactly at the k-th place: the threshold keeps *all* tied keys
  (deterministic, independent of key order), ``torch.topk`` keeps an implementation-defined subset.
* :func:`knn_attention_fast` -- the threshold form with the selection in one compiled pass per row
  (:mod:`knn_attention.kernels`, torch ``topk`` fallback), softmax in place and a hand-written
  backward; what the modules run by default. Falls back to the threshold form for bias / dropout /
  autocast.
* :func:`knn_attention_gather` -- the "slow" variant: gather the k selected keys/values per query
  and softmax over k entries only. Same values, far slower.

Cost: the full score matrix is still computed, plus the per-row selection, so a k-NN training step
is slower than timm's fused SDPA one; ``benchmarks/knn_attention.py`` prints both side by side.

``topk`` is an absolute count (``int``) or a ratio of the number of keys (``float`` in (0, 1]),
resolved per call by :func:`resolve_topk`; a per-layer list is set with :func:`set_topk`. An
absolute ``k`` larger than the number of keys is an error (one line naming k and N), a ratio is
clamped to [1, N].

Usage::

    import timm, knn_attention  # registers knn_deit_*/knn_swin_* names
    m = timm.create_model("knn_deit_small_patch16_224", topk=100)      # official DeiT setting
    m = timm.create_model("vit_small_patch16_224", attn_layer=KNNAttention)  # any timm ViT, k = N/2
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import torch
from timm.layers import Attention
from timm.models.swin_transformer import WindowAttention
from torch import nn

from .kernels import mask_below_kth_

TopK = Union[int, float]

IMPLS = ("fast", "threshold", "scatter", "gather")


def resolve_topk(topk: TopK, n_keys: int) -> int:
    """Number of keys to keep per query for ``n_keys`` keys.

    ``int`` >= 1: that many keys; larger than ``n_keys`` raises. ``float`` in (0, 1]: a ratio,
    ``max(1, int(ratio * n_keys))`` (MotionRGBD's rule; 100/197 of DeiT is a ratio of ~0.51).
    """
    if isinstance(topk, bool) or not isinstance(topk, (int, float)):
        raise TypeError(f"topk must be an int (count) or a float ratio in (0, 1], got {topk!r}")
    if isinstance(topk, float):
        if not 0.0 < topk <= 1.0:
            raise ValueError(f"topk ratio must be in (0, 1], got {topk}")
        return min(n_keys, max(1, int(topk * n_keys)))
    if topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    if topk > n_keys:
        raise ValueError(f"topk k={topk} > N={n_keys} keys: choose k <= {n_keys} or a ratio in (0, 1]")
    return topk


@torch.no_grad()
def topk_threshold_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask ``(..., N)``: True where a score is >= the k-th largest score of its row.

    Ties at the k-th place keep every tied key (so a row may keep more than k keys).
    """
    kth = scores.topk(k, dim=-1, largest=True, sorted=False).values.amin(dim=-1, keepdim=True)
    return scores >= kth


def _scores(q: torch.Tensor, k: torch.Tensor, scale: float, bias: torch.Tensor | None) -> torch.Tensor:
    # timm's order (scale q, then matmul) so that k = N matches timm's manual path bit for bit.
    s = (q * scale) @ k.transpose(-2, -1)
    return s if bias is None else s + bias


def knn_probs_threshold(scores: torch.Tensor, topk: TopK) -> torch.Tensor:
    """Row-wise softmax over the kept scores; ``scores`` (B, h, N, M) -> probabilities (B, h, N, M)."""
    k = resolve_topk(topk, scores.shape[-1])
    if k == scores.shape[-1]:
        return scores.softmax(dim=-1)
    keep = topk_threshold_mask(scores, k)
    return scores.masked_fill(~keep, float("-inf")).softmax(dim=-1)


def knn_scores_scatter(scores: torch.Tensor, topk: TopK) -> torch.Tensor:
    """The official selection: ``topk`` indices -> zero mask with ones scattered -> ``where(mask, S, -inf)``
    (KVT's ``kNNAttention``, MotionRGBD's ``trans_module.Attention``). Scores (..., N) -> masked scores."""
    k = resolve_topk(topk, scores.shape[-1])
    mask = torch.zeros_like(scores)
    index = scores.topk(k, dim=-1, largest=True)[1]
    mask.scatter_(-1, index, 1.0)
    return torch.where(mask > 0, scores, torch.full_like(scores, float("-inf")))


def knn_probs_scatter(scores: torch.Tensor, topk: TopK) -> torch.Tensor:
    """The official form: :func:`knn_scores_scatter`, then softmax."""
    return knn_scores_scatter(scores, topk).softmax(dim=-1)


def knn_attention_threshold(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, topk: TopK, scale: float,
                            bias: torch.Tensor | None = None, attn_drop: nn.Module | None = None) -> torch.Tensor:
    """k-NN attention, threshold form. ``q, k, v``: (B, h, N, d); ``bias`` broadcastable to (B, h, N, N),
    added before the top-k (relative position bias, Swin shift mask). Returns (B, h, N, d)."""
    p = knn_probs_threshold(_scores(q, k, scale, bias), topk)
    if attn_drop is not None:
        p = attn_drop(p)
    return p @ v


def knn_attention_scatter(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, topk: TopK, scale: float,
                          bias: torch.Tensor | None = None, attn_drop: nn.Module | None = None) -> torch.Tensor:
    """k-NN attention exactly as the official ``kNNAttention.forward`` computes it. Shapes as above."""
    p = knn_probs_scatter(_scores(q, k, scale, bias), topk)
    if attn_drop is not None:
        p = attn_drop(p)
    return p @ v


def knn_attention_gather(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, topk: TopK, scale: float,
                         bias: torch.Tensor | None = None, attn_drop: nn.Module | None = None) -> torch.Tensor:
    """The "slow" form: gather the k selected values per query, softmax over those k scores only.

    ``k, v`` may hold M != N keys (B, h, M, d). Memory (B, h, N, k, d): a reference for tests, not for
    training.
    """
    s = _scores(q, k, scale, bias)
    kk = resolve_topk(topk, s.shape[-1])
    top, index = s.topk(kk, dim=-1, largest=True)  # (B, h, N, k)
    p = top.softmax(dim=-1)
    if attn_drop is not None:
        p = attn_drop(p)
    b, h, m, d = v.shape  # M keys/values (M != N after a spatial reduction: PVT, Twins)
    n = q.shape[-2]
    v_sel = v.unsqueeze(2).expand(b, h, n, m, d).gather(
        3, index.unsqueeze(-1).expand(b, h, n, kk, d))  # (B, h, N, k, d)
    return (p.unsqueeze(-1) * v_sel).sum(dim=3)


class _FastKNNAttention(torch.autograd.Function):
    """Threshold form with a hand-written backward and no extra (B, h, N, N) buffer.

    Forward: the score matrix is masked (compiled kernel, :mod:`knn_attention.kernels`) and softmaxed
    in place, so ``P`` reuses the scores' memory. Backward (FlashAttention's identity)::

        dP = dO V^T,   D_i = sum_j dP_ij P_ij = dO_i . O_i,   dS = P * (dP - D)   (in place in dP)

    ``dS`` is already zero where keys were dropped (P = 0 there), so no mask is kept. One (B,h,N,N)
    allocation per pass instead of two: on CPU the fresh pages of such a buffer cost as much as a matmul.
    """

    @staticmethod
    def forward(ctx, q, k, v, topk: int, scale: float):
        s = (q * scale) @ k.transpose(-2, -1)
        if topk < s.shape[-1] and not mask_below_kth_(s, topk):
            kth = s.topk(topk, dim=-1, largest=True, sorted=False).values.amin(dim=-1, keepdim=True)
            s.masked_fill_(s < kth, float("-inf"))
        p = torch.ops.aten._softmax.out(s, -1, False, out=s)  # in place: same values as s.softmax(-1)
        out = p @ v
        ctx.save_for_backward(q, k, v, p, out)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, p, out = ctx.saved_tensors
        grad_v = p.transpose(-2, -1) @ grad_out
        d = (grad_out * out).sum(dim=-1, keepdim=True)
        grad_s = (grad_out @ v.transpose(-2, -1)).sub_(d).mul_(p)
        grad_q = (grad_s @ k) * ctx.scale
        grad_k = grad_s.transpose(-2, -1) @ (q * ctx.scale)
        return grad_q, grad_k, grad_v, None, None


def knn_attention_fast(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, topk: TopK, scale: float,
                       bias: torch.Tensor | None = None, attn_drop: nn.Module | None = None) -> torch.Tensor:
    """Same values and gradients as :func:`knn_attention_threshold`, less memory traffic (CPU training).

    Falls back to the plain threshold form where the custom backward does not apply: an additive
    ``bias`` (Swin), active attention dropout, or autocast (mixed dtypes).
    """
    dropping = attn_drop is not None and attn_drop.training and attn_drop.p > 0
    if bias is not None or dropping or torch.is_autocast_enabled(q.device.type):
        return knn_attention_threshold(q, k, v, topk, scale, bias, attn_drop)
    return _FastKNNAttention.apply(q, k, v, resolve_topk(topk, k.shape[-2]), scale)


_FORMS = {"fast": knn_attention_fast, "threshold": knn_attention_threshold,
          "scatter": knn_attention_scatter, "gather": knn_attention_gather}


def knn_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, topk: TopK, scale: float,
                  bias: torch.Tensor | None = None, attn_drop: nn.Module | None = None,
                  impl: str = "fast") -> torch.Tensor:
    """Dispatch to one form (``impl`` in ``fast | threshold | scatter | gather``)."""
    if impl not in _FORMS:
        raise ValueError(f"impl must be one of {' | '.join(IMPLS)}, got '{impl}'")
    return _FORMS[impl](q, k, v, topk, scale, bias, attn_drop)


def check_impl(impl: str) -> str:
    """``impl`` when it names one of the forms, else a one-line ``ValueError``."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {' | '.join(IMPLS)}, got '{impl}'")
    return impl


class KNNSelection:
    """Mixin of every k-NN attention module: the ``topk`` and ``impl`` it runs with (what
    :func:`knn_modules` finds and :func:`set_topk` sets)."""

    topk: TopK
    impl: str

    def _init_knn(self, topk: TopK, impl: str) -> None:
        resolve_topk(topk, 10**9)  # validate type/range now; k vs the number of keys is checked per call
        self.topk, self.impl = topk, check_impl(impl)

    def extra_repr(self) -> str:
        return f"topk={self.topk}, impl={self.impl}"


class KNNAttention(KNNSelection, Attention):
    """timm ``Attention`` with k-NN selection; a drop-in ``attn_layer`` for ``VisionTransformer``.

    Same parameters and state-dict keys as ``timm.layers.Attention`` (``qkv``, ``proj``, optional
    ``q_norm``/``k_norm``/``norm``/``gate``). ``topk``: int count or float ratio of the keys
    (default 0.5). ``impl``: which form runs (see module docstring). ``attn_mask``/``is_causal``
    are added to the scores *before* the top-k, like Swin's shift mask.
    """

    def __init__(self, dim: int, num_heads: int = 8, *, topk: TopK = 0.5, impl: str = "fast",
                 **kwargs) -> None:
        super().__init__(dim, num_heads=num_heads, **kwargs)
        self._init_knn(topk, impl)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                is_causal: bool = False) -> torch.Tensor:
        """``x``: (B, N, C) -> (B, N, C)."""
        B, N, _ = x.shape
        gate_layer = getattr(self, "gate", None)  # timm >= 1.0.28 has an optional output gate
        gate = gate_layer(x).sigmoid() if gate_layer is not None else None
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        bias = _additive_bias(N, q, attn_mask, is_causal)
        x = knn_attention(q, k, v, self.topk, self.scale, bias, self.attn_drop, self.impl)
        x = x.transpose(1, 2).reshape(B, N, self.attn_dim)
        x = self.norm(x)
        if gate is not None:
            x = x * gate
        return self.proj_drop(self.proj(x))

    @torch.no_grad()
    def attention_probs(self, x: torch.Tensor) -> torch.Tensor:
        """The k-NN attention map (B, h, N, N) this module applies to ``x`` (B, N, C) (for analysis)."""
        B, N, _ = x.shape
        q, k, _ = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        s = _scores(self.q_norm(q), self.k_norm(k), self.scale, None)
        return knn_probs_scatter(s, self.topk) if self.impl == "scatter" else knn_probs_threshold(s, self.topk)


def _additive_bias(n: int, q: torch.Tensor, attn_mask: torch.Tensor | None, is_causal: bool):
    if is_causal:
        return q.new_full((n, n), float("-inf")).triu_(1)
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        return torch.zeros_like(attn_mask, dtype=q.dtype).masked_fill_(~attn_mask, float("-inf"))
    return attn_mask


class KNNWindowAttention(KNNSelection, WindowAttention):
    """Swin window attention with k-NN selection inside each window (``N = Wh*Ww`` keys, 49 for 7x7).

    The relative position bias and the shifted-window mask (-100 between regions) are added to the
    scores *before* the top-k, so cross-region keys are only picked when a row has fewer than k keys
    in its own region (they then still get ~exp(-100) weight, as in dense Swin).
    """

    def __init__(self, dim: int, num_heads: int, *, topk: TopK = 0.5, impl: str = "fast", **kwargs):
        super().__init__(dim, num_heads, **kwargs)
        self._init_knn(topk, impl)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: (num_windows*B, N, C); ``mask``: (num_windows, N, N) 0/-100 or None."""
        B_, N, _ = x.shape
        q, k, v = self.qkv(x).reshape(B_, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        bias = self._get_rel_pos_bias()  # (1, h, N, N)
        if mask is not None:
            nw = mask.shape[0]
            bias = (bias.unsqueeze(1) + mask.unsqueeze(1).unsqueeze(0)).expand(B_ // nw, -1, -1, -1, -1)
            bias = bias.reshape(B_, self.num_heads, N, N)
        x = knn_attention(q, k, v, self.topk, self.scale, bias, self.attn_drop, self.impl)
        x = x.transpose(1, 2).reshape(B_, N, -1)
        return self.proj_drop(self.proj(x))


# ----------------------------------------------------------------------------- model surgery
def knn_modules(model: nn.Module) -> list[nn.Module]:
    """Every k-NN attention module of ``model``, in order."""
    return [m for m in model.modules() if isinstance(m, KNNSelection)]


def set_topk(model: nn.Module, topk: TopK | Sequence[TopK], impl: str | None = None) -> nn.Module:
    """Set k on every k-NN module: one value for all, or one per module (list in block order)."""
    mods = knn_modules(model)
    if not mods:
        raise ValueError("set_topk: the model has no k-NN attention module")
    ks = list(topk) if isinstance(topk, (list, tuple)) else [topk] * len(mods)
    if len(ks) != len(mods):
        raise ValueError(f"set_topk: {len(ks)} values of topk for {len(mods)} attention modules")
    for m, kk in zip(mods, ks):
        resolve_topk(kk, 10**9)
        m.topk = kk
        if impl is not None:
            m.impl = check_impl(impl)
    return model


def knnify_swin(model: nn.Module, topk: TopK = 0.5, impl: str = "fast") -> nn.Module:
    """Replace every timm Swin ``WindowAttention`` by :class:`KNNWindowAttention` (weights kept)."""
    for old in list(model.modules()):
        for child_name, child in list(old.named_children()):
            if type(child) is WindowAttention:
                heads = child.num_heads
                new = KNNWindowAttention(
                    child.dim, heads, topk=topk, impl=impl, head_dim=child.qkv.out_features // 3 // heads,
                    window_size=child.window_size, qkv_bias=child.qkv.bias is not None,
                    attn_drop=child.attn_drop.p, proj_drop=child.proj_drop.p,
                    device=child.qkv.weight.device, dtype=child.qkv.weight.dtype)
                new.load_state_dict(child.state_dict())
                setattr(old, child_name, new)
    return model


__all__ = [
    "KNNAttention", "KNNWindowAttention", "KNNSelection", "resolve_topk", "topk_threshold_mask", "knn_attention",
    "knn_attention_fast", "knn_attention_threshold", "knn_attention_scatter", "knn_attention_gather",
    "knn_probs_threshold", "knn_probs_scatter", "knn_scores_scatter", "knn_modules", "set_topk", "knnify_swin",
]
