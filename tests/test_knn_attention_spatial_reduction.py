"""k-NN attention in PVT-v2 and Twins: top-k over the *reduced* keys; k = M is the dense model, small k is not."""
from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

import knn_attention  # noqa: F401  (registers the names)
from knn_attention.convert import dense_to_knn
from knn_attention.model import knn_attention as knn_op
from knn_attention.model import knn_modules, set_topk
from knn_attention.spatial_reduction import (
    KNN_SPATIAL_REDUCTION,
    KNNGlobalSubSampleAttn,
    KNNLocallyGroupedAttn,
    KNNPvtV2Attention,
)
from knn_attention.timm_models import KNN_SPATIAL_REDUCTION_NAMES

# 64 px. PVT-v2: stage grids 16, 8, 4, 2 tokens a side; sr (4, 2, 1, 1) -> M = 16, 16, 16, 4 keys for
# N = 256, 64, 16, 4 queries. Twins (patch 4): same grids and M for GSA; LSA windows ws=4 -> 16 keys
# (the last stage's 2x2 grid padded to one 4x4 window).
TINY_PVT = dict(depths=(1, 1, 1, 1), embed_dims=(8, 16, 16, 24), num_heads=(1, 2, 2, 3), sr_ratios=(4, 2, 1, 1),
                mlp_ratios=(2, 2, 2, 2), num_classes=5)
TINY_PCPVT = dict(img_size=64, depths=(1, 1, 1, 1), embed_dims=(8, 16, 16, 24), num_heads=(1, 2, 2, 3),
                  sr_ratios=(4, 2, 1, 1), mlp_ratios=(2, 2, 2, 2), num_classes=5)
TINY_SVT = dict(TINY_PCPVT, depths=(2, 2, 2, 2), wss=(4, 4, 4, 4))
CASES = {  # knn name, dense name, kwargs, keys per attention module (block order)
    "pvt_v2": ("knn_pvt_v2_b0", "pvt_v2_b0", TINY_PVT, [16, 16, 16, 4]),
    "pvt_v2_linear": ("knn_pvt_v2_b2_li", "pvt_v2_b2_li", TINY_PVT, [49] * 4),  # 7x7 adaptive pool
    "twins_pcpvt": ("knn_twins_pcpvt_small", "twins_pcpvt_small", TINY_PCPVT, [16, 16, 16, 4]),
    "twins_svt": ("knn_twins_svt_small", "twins_svt_small", TINY_SVT, [16, 16, 16, 16, 16, 16, 16, 4]),
}


def _pair(case: str):
    name, base, kw, keys = CASES[case]
    torch.manual_seed(0)
    dense = timm.create_model(base, pretrained=False, **kw).double().eval()
    knn = timm.create_model(name, **kw).double().eval()
    knn.load_state_dict(dense.state_dict(), strict=True)  # same keys: dense weights load unchanged
    return dense, knn, keys


@pytest.mark.parametrize("case", list(CASES))
def test_k_equal_to_the_reduced_key_count_is_the_dense_model(case):
    dense, knn, keys = _pair(case)
    assert len(knn_modules(knn)) == len(keys)
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    ref = dense(x)
    for impl in ("fast", "threshold", "scatter", "gather"):
        set_topk(knn, keys, impl)
        torch.testing.assert_close(knn(x), ref, atol=1e-10, rtol=0)
    set_topk(knn, 1.0)  # ratio 1 = every reduced key
    torch.testing.assert_close(knn(x), ref, atol=1e-10, rtol=0)
    set_topk(knn, [max(1, m // 4) for m in keys])
    assert (knn(x) - ref).abs().max() > 1e-4  # the k-NN path is live


@pytest.mark.parametrize("case", ["pvt_v2", "twins_svt"])
def test_absolute_k_is_checked_against_the_reduced_keys_not_the_queries(case):
    _, knn, keys = _pair(case)
    set_topk(knn, 17)  # stage 1 has 256 queries but only 16 reduced keys / window keys
    with pytest.raises(ValueError, match=r"k=17 > N=16"):
        knn(torch.randn(1, 3, 64, 64, dtype=torch.float64))


def test_registered_names_swap_every_spatial_reduction_attention():
    for base in KNN_SPATIAL_REDUCTION_NAMES:
        kw = TINY_SVT if base.startswith("twins_svt") else TINY_PCPVT if base.startswith("twins") else TINY_PVT
        m = timm.create_model(f"knn_{base}", **kw)
        assert not [x for x in m.modules() if type(x) in KNN_SPATIAL_REDUCTION], base
        assert knn_modules(m) and all(x.topk == 0.5 for x in knn_modules(m)), base
    with pytest.raises(ValueError, match="no k-NN weights"):
        timm.create_model("knn_pvt_v2_b0", pretrained=True)


def test_twins_svt_alternates_window_and_subsampled_attention_like_timm():
    m = timm.create_model("knn_twins_svt_small", **TINY_SVT)
    assert [type(x) for x in knn_modules(m)[:2]] == [KNNLocallyGroupedAttn, KNNGlobalSubSampleAttn]
    assert all(type(x) is KNNPvtV2Attention for x in knn_modules(timm.create_model("knn_pvt_v2_b0", **TINY_PVT)))


def test_dense_to_knn_converts_a_built_pvt_and_twins():
    for base, kw in (("pvt_v2_b0", TINY_PVT), ("twins_svt_small", TINY_SVT)):
        m = dense_to_knn(timm.create_model(base, pretrained=False, **kw), 0.25)
        assert not [x for x in m.modules() if type(x) in KNN_SPATIAL_REDUCTION]
        assert knn_modules(m) and all(x.topk == 0.25 for x in knn_modules(m))


def test_forms_agree_with_fewer_keys_than_queries():
    """N = 12 queries over M = 5 keys (the reduced case): all forms agree, k = M is softmax attention."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 3, 12, 4, generator=g, dtype=torch.float64)
    k, v = (torch.randn(2, 3, 5, 4, generator=g, dtype=torch.float64) for _ in range(2))
    dense = torch.softmax(q @ k.transpose(-2, -1) * 0.5, -1) @ v
    for impl in ("fast", "threshold", "scatter", "gather"):
        torch.testing.assert_close(knn_op(q, k, v, 5, 0.5, impl=impl), dense, atol=1e-12, rtol=0)
    outs = [knn_op(q, k, v, 2, 0.5, impl=impl) for impl in ("fast", "threshold", "scatter", "gather")]
    for o in outs[1:]:
        torch.testing.assert_close(o, outs[0], atol=1e-12, rtol=0)
    assert (outs[0] - dense).abs().max() > 1e-3


def test_knn_pvt_and_twins_train_backward():
    for name, kw in (("knn_pvt_v2_b0", TINY_PVT), ("knn_twins_svt_small", TINY_SVT)):
        m = timm.create_model(name, topk=0.25, **kw)
        m(torch.randn(2, 3, 64, 64)).sum().backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters()), name


def test_imagenet_configs_build_pvt_and_twins_with_knn_in_every_block():
    from knn_attention.train import KNNConfig, build_model
    from shared.config import load_config

    configs = Path(__file__).resolve().parents[1] / "knn_attention" / "configs"
    for arch, n_attn in (("pvt-v2-b2", 16), ("twins-svt-s", 18)):
        dense = load_config(configs / f"dense_{arch}_8xb128-300e_in1k.yaml", KNNConfig)
        knn = load_config(configs / f"knn_{arch}_8xb128-300e_in1k.yaml", KNNConfig)
        assert dense.model.arch == knn.model.arch and dense.model.drop_path == knn.model.drop_path
        assert (knn.model.topk, knn.model.topk_ratio, dense.model.attention) == (0, 0.5, "dense")
        with torch.device("meta"):  # full-size models: structure only, no weight init
            m = build_model(knn.model)
        mods = knn_modules(m)
        assert len(mods) == n_attn and all(x.topk == 0.5 for x in mods)
        assert not [x for x in m.modules() if type(x) in KNN_SPATIAL_REDUCTION]
