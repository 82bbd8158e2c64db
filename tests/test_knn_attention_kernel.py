"""The compiled k-th-largest mask (knn_attention/kernels.py) against the torch threshold form."""
from __future__ import annotations

import pytest
import torch

from knn_attention import kernels
from knn_attention.model import knn_attention_fast, knn_attention_threshold

needs_native = pytest.mark.skipif(not kernels.native_available(), reason="no C compiler here")


def torch_mask(s: torch.Tensor, k: int) -> torch.Tensor:
    kth = s.topk(k, dim=-1, sorted=False).values.amin(dim=-1, keepdim=True)
    return s.masked_fill(s < kth, float("-inf"))


def rows(kind: str, r: int, n: int, dtype: torch.dtype, g: torch.Generator) -> torch.Tensor:
    x = torch.randn(r, n, generator=g, dtype=torch.float64)
    if kind == "tiny":
        x = x * 1e-6 + 3.0  # all values in a narrow band far from 0
    elif kind == "huge":
        x = x * 1e30
    elif kind == "ties":
        x = torch.randint(0, 4, (r, n), generator=g).double()
    elif kind == "inf":
        x[:, ::3] = float("-inf")
        x[: r // 2, 1::5] = float("inf")
    elif kind == "sorted":
        x = x.sort(dim=-1, descending=True).values
    elif kind == "constant":
        x = torch.full((r, n), -2.5, dtype=torch.float64)
    return x.to(dtype)


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["gauss", "tiny", "huge", "ties", "inf", "sorted", "constant"])
def test_mask_equals_torch_threshold_form(dtype, kind):
    g = torch.Generator().manual_seed(len(kind))
    for n in (1, 2, 3, 9, 49, 197, 577):
        x = rows(kind, 40, n, dtype, g)
        for k in sorted({1, min(2, n), n // 3 + 1, n // 2 + 1, max(1, n - 1), n}):
            got = x.clone()
            assert kernels.mask_below_kth_(got, k)
            assert torch.equal(got, torch_mask(x, k)), (kind, dtype, n, k)


@needs_native
def test_every_row_keeps_at_least_k_and_exactly_k_without_ties():
    x = torch.randn(6, 5, 101, dtype=torch.float32)
    kernels.mask_below_kth_(x, 37)
    assert torch.all(torch.isfinite(x).sum(-1) == 37)


@needs_native
def test_nan_row_does_not_disturb_the_others():
    x = torch.randn(8, 50)
    x[3, 7] = float("nan")
    got = x.clone()
    assert kernels.mask_below_kth_(got, 20)
    keep = torch.arange(8) != 3
    assert torch.equal(got[keep], torch_mask(x[keep], 20))


def test_unsupported_tensors_are_left_alone():
    x = torch.randn(4, 10, 10)
    nc = x.transpose(-2, -1)
    assert not kernels.mask_below_kth_(nc, 3) and torch.equal(nc, x.transpose(-2, -1))
    h = x.to(torch.bfloat16)
    assert not kernels.mask_below_kth_(h, 3) and torch.equal(h, x.to(torch.bfloat16))
    with pytest.raises(ValueError, match="k=11"):
        kernels.mask_below_kth_(torch.randn(2, 10), 11)


def test_disabled_kernel_falls_back_to_torch_with_the_same_values(monkeypatch):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 40, 8, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    ref = knn_attention_threshold(q, k, v, 13, 0.4)
    ref_g = torch.autograd.grad(ref.square().sum(), (q, k, v))
    monkeypatch.setenv("VISIONREPRO_KNN_NATIVE", "0")
    assert not kernels.native_available() and not kernels.mask_below_kth_(torch.randn(3, 5), 2)
    out = knn_attention_fast(q, k, v, 13, 0.4)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)
    for a, b in zip(torch.autograd.grad(out.square().sum(), (q, k, v)), ref_g):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
