"""The ELSA aggregation (the official ``elsa_op``), in three interchangeable pure-PyTorch forms.

Notation (official code, ``cls/models/elsa/elsa.py``): value ``v`` (B, C, H, W) split into G heads of
c = C / G channels (channel ``ch`` belongs to head ``ch // c``); attention maps ``A`` (B, G, k*k, H, W),
already soft-maxed over the k*k axis; ghost matrices ``M`` (mul) and ``Bg`` (add), (C, k, k), shared by
all pixels and images. With offsets o_j = d * (dy - k//2, dx - k//2), j = dy * k + dx (row-major):

    F[ch, j, p] = M[ch, j]^lam * A[g, j, p] + gamma * Bg[ch, j]                 (ghost head)
    y[ch, p]    = sum_j F[ch, j, p] * v[ch, p + o_j]      (v zero outside the image)

``ghost_terms`` applies lambda and gamma exactly as the official ``elsa_op`` preamble does (lam == 0:
no mul term; gamma == 0: no add term). The three forms:

* :func:`aggregate_unfold` -- the official CPU fallback: ``F.unfold`` builds a k*k times larger copy of
  ``v``. The readable reference, and the form used when a multiplicative ghost term is present
  (its backward is far faster than the offset loop's).
* :func:`aggregate_shift` -- a loop over the k*k offsets of a zero-padded ``v``; handles every
  (lam, gamma) without the k*k-larger copy (less memory, slow backward).
* :func:`aggregate_tiled` -- the fast path when there is no mul term (the released ELSA-Swin setting,
  lam = 0, gamma = 1). Because A is then shared by the c channels of a head, the sum over j is a matrix
  product: cut the map into T x T tiles, scatter each pixel's k*k weights into a dense
  (T*T, (T+2r)^2) matrix over the tile's halo (r = d * (k//2)) and multiply it with the halo's values
  (GEMM, fast on CPU, and its backward is two GEMMs and a gather). The additive ghost is then exactly a
  depthwise convolution of v with kernel gamma*Bg (a second ``F.conv2d``).

The official CUDA kernels (``elsa_ext``, ``elsa_faster_ext``) are not reproduced: no GPU was available
to build or test a kernel here (see README).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def ghost_terms(ghost_head: torch.Tensor | None, lam: float, gamma: float
                ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(M^lam, gamma * Bg)`` from the official ``ghost_head`` parameter, ``None`` for an absent term.

    ``ghost_head`` shapes (official): lam != 0 and gamma != 0 -> (2, 1, C, k, k) [mul, add];
    only one of them non-zero -> (1, C, k, k); both zero -> ``None``. Returns (C, k, k) tensors.
    Note: ``M ** lam`` with the official N(0, 1) init is NaN for non-integer lam on negative entries.
    """
    if lam != 0 and gamma != 0:
        return ghost_head[0, 0] ** lam, ghost_head[1, 0] * gamma
    if lam != 0:
        return ghost_head[0] ** lam, None
    if gamma != 0:
        return None, ghost_head[0] * gamma
    return None, None


def _check(v: torch.Tensor, attn: torch.Tensor, kernel_size: int, dilation: int) -> tuple[int, int]:
    if v.dim() != 4 or attn.dim() != 5:
        raise ValueError(f"elsa op: expected v (B, C, H, W) and attn (B, G, k*k, H, W), "
                         f"got {tuple(v.shape)} and {tuple(attn.shape)}")
    b, ch, h, w = v.shape
    g = attn.shape[1]
    if kernel_size < 1 or kernel_size % 2 == 0 or dilation < 1:
        raise ValueError(f"elsa op: kernel_size must be odd >= 1 and dilation >= 1, got {kernel_size}, {dilation}")
    if attn.shape != (b, g, kernel_size ** 2, h, w) or ch % g:
        raise ValueError(f"elsa op: attn {tuple(attn.shape)} does not fit v {tuple(v.shape)} with "
                         f"kernel_size={kernel_size} (need (B, G, k*k, H, W) with C divisible by G)")
    return g, ch // g


def aggregate_unfold(v: torch.Tensor, attn: torch.Tensor, ghost_mul: torch.Tensor | None,
                     ghost_add: torch.Tensor | None, kernel_size: int, dilation: int = 1) -> torch.Tensor:
    """Official CPU fallback (``F.unfold``): (B, C, H, W) -> (B, C, H, W). Memory k*k x |v|."""
    g, c = _check(v, attn, kernel_size, dilation)
    b, ch, h, w = v.shape
    kk = kernel_size ** 2
    cols = F.unfold(v, kernel_size, dilation=dilation, padding=kernel_size // 2 * dilation)
    cols = cols.reshape(b, g, c, kk, h * w)
    filters = attn.reshape(b, g, 1, kk, h * w)
    if ghost_mul is not None:
        filters = filters * ghost_mul.reshape(1, g, c, kk, 1)
    if ghost_add is not None:
        filters = filters + ghost_add.reshape(1, g, c, kk, 1)
    return (cols * filters).sum(3).reshape(b, ch, h, w)


def aggregate_shift(v: torch.Tensor, attn: torch.Tensor, ghost_mul: torch.Tensor | None,
                    ghost_add: torch.Tensor | None, kernel_size: int, dilation: int = 1) -> torch.Tensor:
    """Loop over the k*k offsets of a zero-padded ``v``: ``y += v_shift_j * (M_j A_j + Bg_j)``."""
    g, c = _check(v, attn, kernel_size, dilation)
    b, ch, h, w = v.shape
    k, r = kernel_size, kernel_size // 2 * dilation
    vp = F.pad(v, (r, r, r, r)).reshape(b, g, c, h + 2 * r, w + 2 * r)
    out = v.new_zeros(b, g, c, h, w)
    for j in range(k * k):
        dy, dx = divmod(j, k)
        shifted = vp[..., dy * dilation:dy * dilation + h, dx * dilation:dx * dilation + w]
        f = attn[:, :, j:j + 1]  # (B, G, 1, H, W)
        if ghost_mul is not None:
            f = f * ghost_mul[:, dy, dx].reshape(1, g, c, 1, 1)
        if ghost_add is not None:
            f = f + ghost_add[:, dy, dx].reshape(1, g, c, 1, 1)
        out = out + shifted * f
    return out.reshape(b, ch, h, w)


_INDEX_CACHE: dict[tuple, torch.Tensor] = {}


def halo_index(tile: int, kernel_size: int, dilation: int, device: torch.device) -> torch.Tensor:
    """(T*T, k*k) long: position of pixel i's j-th neighbour in its tile's flattened (T+2r)^2 halo."""
    key = (tile, kernel_size, dilation, str(device))
    if key not in _INDEX_CACHE:
        side = tile + 2 * (kernel_size // 2) * dilation
        t = torch.arange(tile)
        o = torch.arange(kernel_size) * dilation
        rows = (t[:, None, None, None] + o[None, None, :, None]).expand(tile, tile, kernel_size, kernel_size)
        cols = (t[None, :, None, None] + o[None, None, None, :]).expand(tile, tile, kernel_size, kernel_size)
        _INDEX_CACHE[key] = (rows * side + cols).reshape(tile * tile, kernel_size ** 2).to(device)
    return _INDEX_CACHE[key]


def _to_tiles(x: torch.Tensor, tile: int, hp: int, wp: int) -> torch.Tensor:
    """(N, D, H, W) -> (N * nH * nW, T*T, D), zero-padding H, W up to hp, wp."""
    n, d, h, w = x.shape
    x = F.pad(x, (0, wp - w, 0, hp - h)).reshape(n, d, hp // tile, tile, wp // tile, tile)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(-1, tile * tile, d)


def _halos(v: torch.Tensor, tile: int, r: int, hp: int, wp: int) -> torch.Tensor:
    """(N, c, H, W) -> (N * nH * nW, (T+2r)^2, c): each tile's zero-padded neighbourhood."""
    n, c, h, w = v.shape
    side = tile + 2 * r
    vp = F.pad(v, (r, r + wp - w, r, r + hp - h))
    halo = vp.unfold(2, side, tile).unfold(3, side, tile)  # (N, c, nH, nW, side, side), a view
    return halo.permute(0, 2, 3, 4, 5, 1).reshape(-1, side * side, c)


def local_attention_tiled(v: torch.Tensor, attn: torch.Tensor, kernel_size: int, dilation: int = 1,
                          tile: int = 7) -> torch.Tensor:
    """``y[ch, p] = sum_j A[g, j, p] v[ch, p + o_j]`` as one batched GEMM per T x T tile.

    v (B, C, H, W), attn (B, G, k*k, H, W) -> (B, C, H, W). Exactly the neighbourhood sum (border
    neighbours are zeros of the padding); the dense matrix wastes (T+2r)^2 / k^2 multiply-adds.
    """
    g, c = _check(v, attn, kernel_size, dilation)
    b, ch, h, w = v.shape
    kk, r = kernel_size ** 2, kernel_size // 2 * dilation
    side = tile + 2 * r
    hp, wp = -(-h // tile) * tile, -(-w // tile) * tile
    halo = _halos(v.reshape(b * g, c, h, w), tile, r, hp, wp)             # (N, side^2, c)
    a = _to_tiles(attn.reshape(b * g, kk, h, w), tile, hp, wp)             # (N, T^2, k^2)
    idx = halo_index(tile, kernel_size, dilation, v.device).expand(a.shape[0], -1, -1)
    dense = a.new_zeros(a.shape[0], tile * tile, side * side).scatter(2, idx, a)
    y = torch.bmm(dense, halo)                                             # (N, T^2, c)
    y = y.reshape(b * g, hp // tile, wp // tile, tile, tile, c).permute(0, 5, 1, 3, 2, 4)
    return y.reshape(b, ch, hp, wp)[:, :, :h, :w]


def aggregate_tiled(v: torch.Tensor, attn: torch.Tensor, ghost_mul: torch.Tensor | None,
                    ghost_add: torch.Tensor | None, kernel_size: int, dilation: int = 1,
                    tile: int = 7) -> torch.Tensor:
    """Fast path without a mul term: tiled local attention + depthwise conv of v with gamma*Bg."""
    if ghost_mul is not None:
        raise ValueError("aggregate_tiled: a multiplicative ghost term (lam != 0) needs aggregate_shift")
    y = local_attention_tiled(v, attn, kernel_size, dilation, tile)
    if ghost_add is not None:
        ch = v.shape[1]
        y = y + F.conv2d(v, ghost_add.reshape(ch, 1, kernel_size, kernel_size).to(v.dtype),
                         padding=kernel_size // 2 * dilation, dilation=dilation, groups=ch)
    return y


IMPLS = ("auto", "tiled", "shift", "unfold")


def elsa_aggregate(v: torch.Tensor, attn: torch.Tensor, ghost_mul: torch.Tensor | None,
                   ghost_add: torch.Tensor | None, kernel_size: int, dilation: int = 1,
                   impl: str = "auto", tile: int = 7) -> torch.Tensor:
    """Dispatch: ``auto`` = ``tiled`` without a mul term, else ``unfold``. All give the same output.

    With a mul term (lam != 0, ELSA-VOLO's default) ``unfold`` is the fastest form measured on CPU: at
    ELSA-VOLO-D1's stage 0 (batch 4, 192 x 28 x 28, k 5) forward + backward took 0.42 s against 2.4 s for
    ``shift``, whose autograd backward reduces 25 broadcast products (a hand-written backward of the
    offset loop was no faster); on an 8 x 8 map the two are within 25 %."""
    if impl == "auto":
        impl = "tiled" if ghost_mul is None else "unfold"
    if impl == "tiled":
        return aggregate_tiled(v, attn, ghost_mul, ghost_add, kernel_size, dilation, tile)
    if impl == "shift":
        return aggregate_shift(v, attn, ghost_mul, ghost_add, kernel_size, dilation)
    if impl == "unfold":
        return aggregate_unfold(v, attn, ghost_mul, ghost_add, kernel_size, dilation)
    raise ValueError(f"elsa op: impl must be one of {IMPLS}, got '{impl}'")


def local_logits_tiled(q: torch.Tensor, k: torch.Tensor, kernel_size: int, dilation: int = 1,
                       tile: int = 7) -> torch.Tensor:
    """Dot products of each query with its k*k neighbouring keys (zero keys outside the image).

    q, k (B, G, c, H, W) -> (B, G, k*k, H, W): ``q[p] . k[p + o_j]``. For the plain local
    self-attention (LSA) baseline; same tiling as :func:`local_attention_tiled`.
    """
    b, g, c, h, w = q.shape
    kk, r = kernel_size ** 2, kernel_size // 2 * dilation
    hp, wp = -(-h // tile) * tile, -(-w // tile) * tile
    qt = _to_tiles(q.reshape(b * g, c, h, w), tile, hp, wp)               # (N, T^2, c)
    halo = _halos(k.reshape(b * g, c, h, w), tile, r, hp, wp)             # (N, side^2, c)
    dense = torch.bmm(qt, halo.transpose(1, 2))                            # (N, T^2, side^2)
    idx = halo_index(tile, kernel_size, dilation, q.device).expand(dense.shape[0], -1, -1)
    logits = dense.gather(2, idx)                                          # (N, T^2, k^2)
    logits = logits.reshape(b * g, hp // tile, wp // tile, tile, tile, kk).permute(0, 5, 1, 3, 2, 4)
    return logits.reshape(b, g, kk, hp, wp)[..., :h, :w]


def valid_neighbours(h: int, w: int, kernel_size: int, dilation: int, device=None) -> torch.Tensor:
    """(k*k, H, W) bool: whether neighbour j of pixel p lies inside the image."""
    ones = torch.ones(1, 1, h, w, device=device)
    cols = F.unfold(ones, kernel_size, dilation=dilation, padding=kernel_size // 2 * dilation)
    return cols.reshape(kernel_size ** 2, h, w) > 0
