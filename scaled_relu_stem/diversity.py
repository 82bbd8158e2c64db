"""Patch-token diversity, the paper's second claim: a scaled-ReLU stem keeps patch tokens from
collapsing to similar vectors.

Measure (as the paper's summaries describe it; the exact equation is unverified, spec section 2): the mean
pairwise cosine similarity of the patch tokens of one image, averaged over images,

    sim(T) = 1 / (N (N - 1)) * sum_{i != j} <t_i, t_j> / (|t_i| |t_j|),    T = (t_1 .. t_N) in R^{N x D}

taken after the stem (layer 0) and after each transformer block (layers 1..L). Lower = more diverse.
Prefix tokens (class / register tokens) are excluded.

**Raw vs. centred** (issue 25). The raw cosine above is uncentred: a component shared by every token of
an image (a common offset ``c`` with ``t_i = c + r_i``) pulls every pair towards similarity 1 as ``|c|``
grows, whatever the ``r_i`` do. A ReLU stem makes exactly such an offset (its features are non-negative,
so the projection of their positive mean is one vector added to every token), as do the projection's
bias and the position-independent part of the content. The *centred* measure removes it first,

    sim_c(T) = sim(T - mean_i t_i)          (tokens minus their per-image mean token)

which asks whether the tokens differ from *each other*, the paper's "diversity of patch tokens". Both are
reported; the centred one is the measure we read the claim on. Note that for centred tokens
``sum_i t_i = 0``, so the mean pairwise cosine of N equal-norm tokens is exactly ``-1 / (N - 1)``: the
centred measure lives near 0 and *lower* still means more diverse.
"""
from __future__ import annotations

import torch
from torch import nn


def centre_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """``(B, N, D)`` tokens minus their per-image mean token (mean over N)."""
    return tokens - tokens.mean(dim=1, keepdim=True)


def mean_pairwise_cosine(tokens: torch.Tensor, eps: float = 1e-8, centred: bool = False) -> torch.Tensor:
    """Mean cosine similarity over all ordered pairs i != j of tokens, per image.

    Args:
        tokens: ``(B, N, D)`` patch tokens (no prefix tokens), N >= 2.
        centred: subtract the per-image mean token first (:func:`centre_tokens`).
    Returns:
        ``(B,)`` similarities in [-1, 1]. A zero token counts as orthogonal to everything.
    """
    if tokens.dim() != 3 or tokens.shape[1] < 2:
        raise ValueError(f"tokens must be (B, N>=2, D), got {tuple(tokens.shape)}")
    t = tokens.float()
    if centred:
        t = centre_tokens(t)
    t = t / t.norm(dim=-1, keepdim=True).clamp_min(eps)
    n = t.shape[1]
    # sum over all pairs of <t_i, t_j> = |sum_i t_i|^2; remove the diagonal (sum of |t_i|^2)
    total = t.sum(dim=1).pow(2).sum(-1)
    diag = t.pow(2).sum(dim=(1, 2))
    return (total - diag) / (n * (n - 1))


def mean_pairwise_cosine_reference(tokens: torch.Tensor, centred: bool = False) -> torch.Tensor:
    """The same quantity from the explicit N x N similarity matrix (slow, for tests)."""
    t = tokens.double()
    if centred:
        t = t - t.mean(dim=1, keepdim=True)
    t = nn.functional.normalize(t, dim=-1)
    sim = t @ t.transpose(1, 2)
    n = t.shape[1]
    off = ~torch.eye(n, dtype=torch.bool, device=t.device)
    return sim[:, off].mean(dim=1).float()


@torch.no_grad()
def layer_tokens(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Patch tokens ``(B, N, D)`` after the stem (``patch_embed``, before pos-embed) and after each block
    of a timm ``VisionTransformer`` (``model.num_prefix_tokens`` prefix tokens dropped)."""
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
    return outs


def layerwise_token_similarity(model: nn.Module, x: torch.Tensor, centred: bool = False) -> list[float]:
    """``[sim after stem, sim after block 1, ..., sim after block L]`` of a timm ``VisionTransformer``
    on the batch ``x`` (B, C, H, W), each the batch mean of :func:`mean_pairwise_cosine`.

    The stem output is taken from ``patch_embed`` (before pos-embed); block outputs drop the
    ``model.num_prefix_tokens`` prefix tokens. The model's train/eval mode is left as it is.
    ``centred=True``: the centred measure (tokens minus their per-image mean), see the module docstring.
    """
    return [float(mean_pairwise_cosine(o, centred=centred).mean()) for o in layer_tokens(model, x)]


def layerwise_token_similarity_both(model: nn.Module, x: torch.Tensor) -> dict[str, list[float]]:
    """``{"raw": [...], "centred": [...]}`` from one forward pass (stem, then each block)."""
    outs = layer_tokens(model, x)
    return {k: [float(mean_pairwise_cosine(o, centred=c).mean()) for o in outs]
            for k, c in (("raw", False), ("centred", True))}
