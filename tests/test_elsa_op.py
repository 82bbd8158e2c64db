"""ELSA aggregation: every form against a brute-force six-loop reference (float64, values and
gradients, dilation 1 and 2, odd sizes), the lam=0/gamma=1 identity, and the module's wiring against
a line-by-line transcription of the official forward."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from elsa.model import ELSA, LocalSelfAttention
from elsa.op import (
    aggregate_shift,
    aggregate_tiled,
    aggregate_unfold,
    elsa_aggregate,
    ghost_terms,
    local_logits_tiled,
)

DT = torch.float64


def brute_force(v, attn, mul, add, k, d):
    """y[b, ch, y, x] = sum_{dy, dx} (M A + Bg) v[b, ch, y + d(dy - k//2), x + d(dx - k//2)]; six loops."""
    b_, ch_, h_, w_ = v.shape
    g_ = attn.shape[1]
    c = ch_ // g_
    rows = []
    for b in range(b_):
        for ch in range(ch_):
            for y in range(h_):
                for x in range(w_):
                    acc = v.new_zeros(())
                    for dy in range(k):
                        for dx in range(k):
                            yy, xx = y + d * (dy - k // 2), x + d * (dx - k // 2)
                            if not (0 <= yy < h_ and 0 <= xx < w_):
                                continue  # zero padding: the weight exists, the value is 0
                            f = attn[b, ch // c, dy * k + dx, y, x]
                            if mul is not None:
                                f = f * mul[ch, dy, dx]
                            if add is not None:
                                f = f + add[ch, dy, dx]
                            acc = acc + f * v[b, ch, yy, xx]
                    rows.append(acc)
    return torch.stack(rows).reshape(b_, ch_, h_, w_)


def _inputs(k, b=1, g=2, c=2, h=5, w=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(b, g * c, h, w, generator=gen, dtype=DT)
    attn = torch.randn(b, g, k * k, h, w, generator=gen, dtype=DT).softmax(2)
    mul = torch.randn(g * c, k, k, generator=gen, dtype=DT)
    add = torch.randn(g * c, k, k, generator=gen, dtype=DT) * 0.1
    return v, attn, mul, add


FORMS = {"unfold": aggregate_unfold, "shift": aggregate_shift,
         "tiled3": lambda *a: aggregate_tiled(*a, tile=3), "tiled4": lambda *a: aggregate_tiled(*a, tile=4)}


@pytest.mark.parametrize("k,d", [(3, 1), (3, 2), (5, 1), (5, 2)])
@pytest.mark.parametrize("terms", ["add", "mul_add", "mul", "none"])
def test_forms_match_brute_force_values_and_gradients(k, d, terms):
    v, attn, mul, add = _inputs(k)
    mul = mul if "mul" in terms else None
    add = add if "add" in terms else None
    leaves = [t.requires_grad_() for t in (v, attn, mul, add) if t is not None]
    ref = brute_force(v, attn, mul, add, k, d)
    g_out = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, leaves, g_out)
    for name, fn in FORMS.items():
        if name.startswith("tiled") and mul is not None:
            continue  # the tiled path is only for lam = 0
        out = fn(v, attn, mul, add, k, d)
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12, msg=f"{name} forward")
        for lf, gr, gf in zip(leaves, ref_grads, torch.autograd.grad(out, leaves, g_out)):
            torch.testing.assert_close(gf, gr, rtol=1e-10, atol=1e-12, msg=f"{name} gradient {tuple(lf.shape)}")


def test_tiled_refuses_a_mul_term_and_auto_dispatches():
    v, attn, mul, add = _inputs(3)
    with pytest.raises(ValueError, match="aggregate_shift"):
        aggregate_tiled(v, attn, mul, add, 3)
    torch.testing.assert_close(elsa_aggregate(v, attn, mul, add, 3), aggregate_unfold(v, attn, mul, add, 3))


def test_lambda0_gamma1_is_local_attention_plus_depthwise_conv():
    """Spec section 1: with the released Swin setting, ELSA = sliding attention with the Hadamard maps
    plus a k x k depthwise convolution of v whose kernel is the additive ghost matrix Bg."""
    k, d = 5, 2
    v, attn, _, bg = _inputs(k, h=7, w=9)
    ghost_head = bg[None]  # (1, C, k, k): the official lam=0, gamma=1 parameter
    mul, add = ghost_terms(ghost_head, lam=0, gamma=1)
    assert mul is None
    elsa = aggregate_shift(v, attn, mul, add, k, d)
    attention_only = aggregate_shift(v, attn, None, None, k, d)
    dwconv = F.conv2d(v, bg[:, None], padding=k // 2 * d, dilation=d, groups=v.shape[1])
    torch.testing.assert_close(elsa, attention_only + dwconv)


def test_kernel_1_is_a_per_channel_scale():
    v, _, mul, add = _inputs(1)
    attn = torch.ones(1, 2, 1, 5, 6, dtype=DT)  # softmax over a single neighbour
    out = aggregate_shift(v, attn, mul, add, 1)
    torch.testing.assert_close(out, v * (mul + add).reshape(1, -1, 1, 1))


def test_ghost_terms_follow_the_official_preamble():
    gh = torch.randn(2, 1, 4, 3, 3, dtype=DT)
    mul, add = ghost_terms(gh, lam=2, gamma=0.5)
    torch.testing.assert_close(mul, gh[0, 0] ** 2)
    torch.testing.assert_close(add, gh[1, 0] * 0.5)
    assert ghost_terms(None, 0, 0) == (None, None)
    mul, add = ghost_terms(gh[0], lam=1, gamma=0)
    assert add is None and torch.equal(mul, gh[0, 0])


def test_bad_shapes_and_impl_give_one_line_errors():
    v, attn, mul, add = _inputs(3)
    with pytest.raises(ValueError, match="does not fit"):
        aggregate_shift(v, attn[:, :, :4], mul, add, 3)
    with pytest.raises(ValueError, match="odd"):
        aggregate_shift(v, attn, mul, add, 4)
    with pytest.raises(ValueError, match="impl must be one of"):
        elsa_aggregate(v, attn, None, add, 3, impl="cuda")


def official_elsa_forward(m: ELSA, x: torch.Tensor) -> torch.Tensor:
    """Transcription of the official ``ELSA.forward`` + CPU ``elsa_op`` (unfold path), stride 1."""
    b, h, w, _ = x.shape
    c, ks, g = m.dim_v, m.kernel_size, m.num_heads
    q, k, v = torch.split(m.pre_proj(x.permute(0, 3, 1, 2)), (m.dim_qk, m.dim_qk, m.dim_v), dim=1)
    h_attn = m.attn(q * k * m.scale)
    v = v.reshape(b * g, c // g, h, w)
    h_attn = h_attn.reshape(b * g, -1, h, w).softmax(1)
    if m.lam != 0 and m.gamma != 0:
        gh = m.ghost_head.expand(2, b, c, ks, ks).reshape(2, b * g, c // g, ks, ks)
        gm, ga = gh[0], gh[1]
    elif m.gamma != 0:
        gm, ga = None, m.ghost_head.expand(b, c, ks, ks).reshape(b * g, c // g, ks, ks)
    elif m.lam != 0:
        gm, ga = m.ghost_head.expand(b, c, ks, ks).reshape(b * g, c // g, ks, ks), None
    else:
        gm = ga = None
    gm = gm ** m.lam if m.lam != 0 else torch.ones(b * g, c // g, ks, ks, dtype=x.dtype)
    ga = ga * m.gamma if m.gamma != 0 else torch.zeros(b * g, c // g, ks, ks, dtype=x.dtype)
    pad = ks // 2 * m.dilation
    feats = F.unfold(v, ks, dilation=m.dilation, padding=pad).reshape(b * g, c // g, ks * ks, h * w)
    filters = gm.reshape(b * g, c // g, ks * ks, 1) * h_attn.reshape(b * g, 1, ks * ks, h * w) \
        + ga.reshape(b * g, c // g, ks * ks, 1)
    y = (feats * filters).sum(2).reshape(b, c, h, w)
    return m.post_proj(y.permute(0, 2, 3, 1))


@pytest.mark.parametrize("lam,gamma,dilation", [(0, 1, 1), (1, 1, 1), (1, 0, 2), (0, 0, 1), (2, 1, 2)])
def test_module_matches_official_forward(lam, gamma, dilation):
    torch.manual_seed(0)
    m = ELSA(24, num_heads=3, kernel_size=3, dilation=dilation, qkv_bias=True, qk_scale=1, group_width=4,
             lam=lam, gamma=gamma).double().eval()
    x = torch.randn(2, 6, 7, 24, dtype=DT)
    torch.testing.assert_close(m(x), official_elsa_forward(m, x))


def test_lsa_logits_and_masking():
    torch.manual_seed(0)
    b, g, c, h, w, k = 1, 2, 3, 5, 6, 3
    q, key = torch.randn(2, b, g, c, h, w, dtype=DT)
    logits = local_logits_tiled(q, key, k, 1, tile=4)
    for y in range(h):
        for x in range(w):
            for j in range(k * k):
                yy, xx = y + j // k - 1, x + j % k - 1
                inside = 0 <= yy < h and 0 <= xx < w
                want = (q[0, :, :, y, x] * key[0, :, :, yy, xx]).sum(-1) if inside else torch.zeros(g, dtype=DT)
                torch.testing.assert_close(logits[0, :, j, y, x], want)


def test_lsa_module_matches_an_unfold_reference_with_masked_borders():
    torch.manual_seed(0)
    b, h, w, dim, g, k = 2, 5, 6, 8, 2, 3
    m = LocalSelfAttention(dim, g, kernel_size=k, tile=4).double().eval()
    x = torch.randn(b, h, w, dim, dtype=DT)
    q, key, v = m.qkv(x).permute(0, 3, 1, 2).reshape(b, 3, dim, h, w).unbind(1)
    cols = lambda t: F.unfold(t, k, padding=1).reshape(b, g, dim // g, k * k, h * w)  # noqa: E731
    logits = (q.reshape(b, g, dim // g, 1, h * w) * cols(key)).sum(2) * m.scale
    logits = logits + m.relative_position_bias.reshape(1, g, k * k, 1)
    inside = F.unfold(torch.ones(1, 1, h, w, dtype=DT), k, padding=1).reshape(1, 1, k * k, h * w) > 0
    attn = logits.masked_fill(~inside, float("-inf")).softmax(2)
    y = (attn[:, :, None] * cols(v)).sum(3).reshape(b, dim, h, w)
    torch.testing.assert_close(m(x), m.proj(y.permute(0, 2, 3, 1)))
