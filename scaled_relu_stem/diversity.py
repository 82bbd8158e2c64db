"""Patch-token diversity, the paper's second claim: a scaled-ReLU stem keeps patch tokens from
collapsing to similar vectors.

Measure (as the paper's summaries describe it; the exact equation is unverified, spec section 2): the mean
pairwise cosine similarity of the patch tokens of one image, averaged over images,

    sim(T) = 1 / (N (N - 1)) * sum_{i != j} <t_i, t_j> / (|t_i| |t_j|),    T = (t_1 .. t_N) in R^{N x D}

taken after the stem (layer 0) and after each transformer block (layers 1..L). Lower = more diverse.
Prefix tokens (class / register tokens) are excluded.
"""
from __future__ import annotations

import torch
from torch import nn


def mean_pairwise_cosine(tokens: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean cosine similarity over all ordered pairs i != j of tokens, per image.

    Args:
        tokens: ``(B, N, D)`` patch tokens (no prefix tokens), N >= 2.
    Returns:
        ``(B,)`` similarities in [-1, 1]. A zero token counts as orthogonal to everything.
    """
    if tokens.dim() != 3 or tokens.shape[1] < 2:
        raise ValueError(f"tokens must be (B, N>=2, D), got {tuple(tokens.shape)}")
    t = tokens.float()
    t = t / t.norm(dim=-1, keepdim=True).clamp_min(eps)
    n = t.shape[1]
    # sum over all pairs of <t_i, t_j> = |sum_i t_i|^2; remove the diagonal (sum of |t_i|^2)
    total = t.sum(dim=1).pow(2).sum(-1)
    diag = t.pow(2).sum(dim=(1, 2))
    return (total - diag) / (n * (n - 1))


def mean_pairwise_cosine_reference(tokens: torch.Tensor) -> torch.Tensor:
    """The same quantity from the explicit N x N similarity matrix (slow, for tests)."""
    t = nn.functional.normalize(tokens.float(), dim=-1)
    sim = t @ t.transpose(1, 2)
    n = t.shape[1]
    off = ~torch.eye(n, dtype=torch.bool, device=t.device)
    return sim[:, off].mean(dim=1)


@torch.no_grad()
def layerwise_token_similarity(model: nn.Module, x: torch.Tensor) -> list[float]:
    """``[sim after stem, sim after block 1, ..., sim after block L]`` of a timm ``VisionTransformer``
    on the batch ``x`` (B, C, H, W), each the batch mean of :func:`mean_pairwise_cosine`.

    The stem output is taken from ``patch_embed`` (before pos-embed); block outputs drop the
    ``model.num_prefix_tokens`` prefix tokens. The model's train/eval mode is left as it is.
    """
    outs: list[torch.Tensor] = []
    n_prefix = getattr(model, "num_prefix_tokens", 1)

    def stem_hook(_m, _inp, out):
        outs.append(out.reshape(out.shape[0], -1, out.shape[-1]))  # (B, N, D) also from NHWC

    def block_hook(_m, _inp, out):
        outs.append(out[:, n_prefix:])

    handles = [model.patch_embed.register_forward_hook(stem_hook)]
    handles += [blk.register_forward_hook(block_hook) for blk in model.blocks]
    try:
        model.forward_features(x)
    finally:
        for h in handles:
            h.remove()
    return [float(mean_pairwise_cosine(o).mean()) for o in outs]
