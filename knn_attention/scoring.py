"""Metrics: top-1, and attention statistics behind the paper's two qualitative claims.

* :func:`top1` -- ImageNet-style top-1 accuracy (%) of ``argmax`` logits.
* :func:`attention_stats` -- per-layer CLS attention share on digit patches (the "noise filtering"
  claim: k-NN attention should put less CLS mass on clutter), attention entropy, and the mean
  spatial distance (in patches) between a query patch and the keys it attends to (the locality claim).

Used by the task's evaluation (``train.py``) and re-exported by the ``evaluate.py`` command (its own
module so that the two do not import each other).
"""
from __future__ import annotations

import torch
from timm.layers import Attention
from torch import nn

from .model import KNNAttention


def top1(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Top-1 accuracy in %, ``logits`` (N, C), ``target`` (N,)."""
    return float((logits.argmax(-1) == target).float().mean() * 100.0)


def _probs(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The attention map (B, h, N, N) that ``attn`` applies to its input ``x`` (B, N, C)."""
    if isinstance(attn, KNNAttention):
        return attn.attention_probs(x)
    if isinstance(attn, Attention):
        b, n, _ = x.shape
        q, k, _ = attn.qkv(x).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        return ((attn.q_norm(q) * attn.scale) @ attn.k_norm(k).transpose(-2, -1)).softmax(-1)
    raise TypeError(f"attention_stats: unsupported attention module {type(attn).__name__}")


@torch.no_grad()
def attention_stats(model: nn.Module, x: torch.Tensor, patch_digit: torch.Tensor,
                    digit_thresh: float = 0.0) -> dict[str, list[float]]:
    """Per-layer statistics of a timm ViT with one CLS token on images ``x`` (B, C, H, W).

    ``patch_digit`` (B, G*G): fraction of digit pixels in each patch; a patch with more than
    ``digit_thresh`` is a digit patch, the rest are clutter/background. Returns lists (one per block):
    ``cls_digit_share`` -- CLS attention mass on digit patches / mass on all patches (CLS->CLS excluded),
    averaged over heads and images; ``digit_patch_frac`` -- the share a uniform map would give;
    ``entropy`` -- mean row entropy (nats); ``key_distance`` -- mean attention-weighted distance
    (in patches) from patch queries to patch keys.
    """
    inputs: list[torch.Tensor] = []
    hooks = [blk.attn.register_forward_pre_hook(lambda m, a: inputs.append(a[0])) for blk in model.blocks]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    g = int(round(patch_digit.shape[1] ** 0.5))
    yy, xx = torch.meshgrid(torch.arange(g, device=patch_digit.device), torch.arange(g, device=patch_digit.device),
                            indexing="ij")
    pos = torch.stack([yy.flatten(), xx.flatten()], -1).float()
    dist = torch.cdist(pos, pos)  # (G*G, G*G) in patches
    digit = (patch_digit > digit_thresh).float()  # (B, P)
    out: dict[str, list[float]] = {"cls_digit_share": [], "digit_patch_frac": [], "entropy": [], "key_distance": []}
    for blk, xin in zip(model.blocks, inputs):
        p = _probs(blk.attn, xin).float()  # (B, h, N, N), token 0 = CLS
        cls_to_patches = p[:, :, 0, 1:]
        share = (cls_to_patches * digit[:, None]).sum(-1) / cls_to_patches.sum(-1).clamp_min(1e-12)
        out["cls_digit_share"].append(float(share.mean()))
        out["digit_patch_frac"].append(float(digit.mean()))
        ent = -(p * p.clamp_min(1e-30).log()).sum(-1)
        out["entropy"].append(float(ent.mean()))
        pp = p[:, :, 1:, 1:]
        pp = pp / pp.sum(-1, keepdim=True).clamp_min(1e-12)
        out["key_distance"].append(float((pp * dist).sum(-1).mean()))
    return out


__all__ = ["attention_stats", "top1"]
