"""k-NN attention math: k = N is dense, the four forms agree, ties, errors, Swin mask order."""
from __future__ import annotations

import pytest
import torch
from timm.layers import Attention
from timm.models.swin_transformer import WindowAttention

from knn_attention.model import (
    KNNAttention,
    KNNWindowAttention,
    knn_attention,
    knn_attention_fast,
    knn_attention_gather,
    knn_attention_scatter,
    knn_attention_threshold,
    knn_probs_threshold,
    resolve_topk,
    topk_threshold_mask,
)

FORMS = {"fast": knn_attention_fast, "threshold": knn_attention_threshold, "scatter": knn_attention_scatter,
         "gather": knn_attention_gather}


def qkv(n: int, b: int = 2, h: int = 3, d: int = 8, seed: int = 0, grad: bool = True):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, n, d, generator=g, dtype=torch.float64).requires_grad_(grad) for _ in range(3)]


def grads(out: torch.Tensor, inputs) -> list[torch.Tensor]:
    w = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    return list(torch.autograd.grad((out * w).sum(), inputs))


@pytest.mark.parametrize("n", [17, 65, 197])
@pytest.mark.parametrize("impl", list(FORMS))
def test_k_equal_n_is_dense_attention_and_gradients(n, impl):
    q, k, v = qkv(n)
    scale = 8 ** -0.5
    dense = ((q * scale) @ k.transpose(-2, -1)).softmax(-1) @ v
    out = FORMS[impl](q, k, v, n, scale)
    torch.testing.assert_close(out, dense, atol=1e-12, rtol=0)
    for a, b in zip(grads(out, (q, k, v)), grads(dense, (q, k, v))):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


@pytest.mark.parametrize("n,kk", [(17, 1), (17, 5), (65, 16), (65, 32), (197, 100)])
def test_forms_agree_below_n(n, kk):
    q, k, v = qkv(n, seed=n + kk)
    ref = knn_attention_scatter(q, k, v, kk, 0.3)  # the official form
    ref_g = grads(ref, (q, k, v))
    for impl in ("fast", "threshold", "gather"):
        out = FORMS[impl](q, k, v, kk, 0.3)
        torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)
        for a, b in zip(grads(out, (q, k, v)), ref_g):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    dense = ((q * 0.3) @ k.transpose(-2, -1)).softmax(-1) @ v
    assert (ref - dense).abs().max() > 1e-3  # k < N really changes the output


def test_exactly_k_keys_get_weight_and_they_are_the_largest():
    q, k, _ = qkv(33, grad=False)
    s = (q * 0.5) @ k.transpose(-2, -1)
    p = knn_probs_threshold(s, 7)
    assert torch.all((p > 0).sum(-1) == 7)
    kept_min = torch.where(p > 0, s, torch.inf).amin(-1)
    dropped_max = torch.where(p > 0, -torch.inf, s).amax(-1)
    assert torch.all(kept_min > dropped_max)
    torch.testing.assert_close(p.sum(-1), torch.ones_like(p.sum(-1)))


def test_fast_form_gradcheck():
    q, k, v = qkv(9, b=1, h=2, d=4)
    assert torch.autograd.gradcheck(lambda a, b, c: knn_attention_fast(a, b, c, 4, 0.7), (q, k, v))


def test_ties_keep_every_tied_key_and_are_order_independent():
    # Row scores [3, 2, 2, 2, 1] with k = 2: the three keys tied at 2 are all kept.
    s = torch.tensor([[[[3.0, 2.0, 2.0, 2.0, 1.0]]]], dtype=torch.float64)
    keep = topk_threshold_mask(s, 2)
    assert keep.tolist() == [[[[True, True, True, True, False]]]]
    # Identical keys: every form of the threshold family gives the same result whatever the order.
    g = torch.Generator().manual_seed(1)
    q = torch.randn(1, 1, 6, 4, generator=g, dtype=torch.float64)
    k = torch.randn(1, 1, 6, 4, generator=g, dtype=torch.float64)
    k[..., 3, :] = k[..., 1, :]  # keys 1 and 3 tie in every row
    v = torch.randn(1, 1, 6, 4, generator=g, dtype=torch.float64)
    perm = torch.tensor([5, 3, 0, 1, 4, 2])
    for kk in range(1, 7):
        out = knn_attention_threshold(q, k, v, kk, 1.0)
        permuted = knn_attention_threshold(q, k[..., perm, :], v[..., perm, :], kk, 1.0)
        torch.testing.assert_close(out, permuted, atol=1e-12, rtol=0)
        torch.testing.assert_close(knn_attention_fast(q, k, v, kk, 1.0), out, atol=1e-12, rtol=0)
    # Run twice: same bits.
    assert torch.equal(knn_attention_threshold(q, k, v, 2, 1.0), knn_attention_threshold(q, k, v, 2, 1.0))


def test_resolve_topk_counts_ratios_and_errors():
    assert resolve_topk(100, 197) == 100
    assert resolve_topk(0.5, 197) == 98
    assert resolve_topk(1.0, 49) == 49
    assert resolve_topk(0.001, 49) == 1  # clamped to at least one key
    with pytest.raises(ValueError, match=r"k=100 > N=49"):
        resolve_topk(100, 49)
    with pytest.raises(ValueError, match="ratio"):
        resolve_topk(1.5, 49)
    with pytest.raises(ValueError, match=">= 1"):
        resolve_topk(0, 49)
    with pytest.raises(TypeError):
        resolve_topk(True, 49)
    q, k, v = qkv(10, grad=False)
    with pytest.raises(ValueError, match=r"k=11 > N=10"):
        knn_attention(q, k, v, 11, 1.0)
    with pytest.raises(ValueError, match="impl"):
        knn_attention(q, k, v, 3, 1.0, impl="flash")


def test_module_k_equal_n_matches_timm_attention_float64():
    torch.manual_seed(0)
    dense = Attention(48, num_heads=4, qkv_bias=True).double().eval()
    knn = KNNAttention(48, num_heads=4, qkv_bias=True, topk=1.0).double().eval()
    knn.load_state_dict(dense.state_dict())  # same keys, strict
    x = torch.randn(3, 21, 48, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(knn(x), dense(x), atol=1e-12, rtol=0)
    ga = torch.autograd.grad(knn(x).sum(), x)[0]
    gb = torch.autograd.grad(dense(x).sum(), x)[0]
    torch.testing.assert_close(ga, gb, atol=1e-12, rtol=0)
    knn.topk = 5
    assert (knn(x) - dense(x)).abs().max() > 1e-4


def test_module_attention_mask_applied_before_topk():
    torch.manual_seed(0)
    m = KNNAttention(16, num_heads=2, topk=3).double().eval()
    x = torch.randn(1, 8, 16, dtype=torch.float64)
    allowed = torch.zeros(8, 8, dtype=torch.bool)
    allowed[:, :4] = True  # only the first four keys are visible
    p_out = m(x, attn_mask=allowed)
    x2 = x.clone()
    x2[:, 4:] += torch.randn(1, 4, 16, dtype=torch.float64)  # hidden tokens' keys/values change ...
    q_rows = m(x2, attn_mask=allowed)[:, :4]
    torch.testing.assert_close(q_rows, p_out[:, :4], atol=1e-12, rtol=0)  # ... rows 0-3 do not move


def _swin_pair(window: int = 4, heads: int = 2, dim: int = 16):
    torch.manual_seed(0)
    dense = WindowAttention(dim, heads, window_size=window).double().eval()
    with torch.no_grad():
        dense.relative_position_bias_table.normal_(0, 1.0)
    knn = KNNWindowAttention(dim, heads, window_size=window, topk=1.0).double().eval()
    knn.load_state_dict(dense.state_dict())
    return dense, knn


def _shift_mask(n_win: int, n: int) -> torch.Tensor:
    # Two regions per window like Swin's shifted windows: 0 within a region, -100 across.
    region = torch.arange(n) % 2
    m = torch.where(region[:, None] == region[None, :], 0.0, -100.0).double()
    return m.expand(n_win, n, n).clone()


def test_swin_k_equal_n_matches_timm_window_attention_with_shift_mask():
    dense, knn = _swin_pair()
    x = torch.randn(4, 16, 16, dtype=torch.float64)  # 2 images x 2 windows, 4x4 window
    mask = _shift_mask(2, 16)
    dense.fused_attn = False
    torch.testing.assert_close(knn(x, mask), dense(x, mask), atol=1e-12, rtol=0)


def test_swin_bias_and_shift_mask_go_in_before_topk():
    dense, knn = _swin_pair()
    knn.topk = 6  # each region of a 16-token window has 8 tokens
    x = torch.randn(2, 16, 16, dtype=torch.float64)
    mask = _shift_mask(1, 16)
    b_, n, _ = x.shape
    q, k, v = knn.qkv(x).reshape(b_, n, 3, knn.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
    bias = knn._get_rel_pos_bias() + mask.unsqueeze(1)
    before = knn_attention_scatter(q, k, v, 6, knn.scale, bias)
    s = (q * knn.scale) @ k.transpose(-2, -1)  # wrong order: pick on raw scores, add bias/mask after
    sel = torch.zeros_like(s).scatter_(-1, s.topk(6, -1)[1], 1.0) > 0
    after = torch.where(sel, s + bias, -torch.inf).softmax(-1) @ v
    out = knn(x, mask)
    expect = knn.proj(before.transpose(1, 2).reshape(b_, n, -1))
    torch.testing.assert_close(out, expect, atol=1e-12, rtol=0)
    wrong = knn.proj(after.transpose(1, 2).reshape(b_, n, -1))
    assert (out - wrong).abs().max() > 1e-3
    # With the mask first, no row keeps a key from the other region (6 < 8 same-region keys).
    p = knn_probs_threshold((q * knn.scale) @ k.transpose(-2, -1) + bias, 6)
    region = torch.arange(n) % 2
    cross = region[:, None] != region[None, :]
    assert p[..., cross].max() < 1e-30
