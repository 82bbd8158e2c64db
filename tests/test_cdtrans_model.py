"""CDTrans model: the triple branch as the official code wires it, BN-neck order, checkpoint layouts."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cdtrans.losses import distill_loss, uda_loss
from cdtrans.model import CDTransModel, load_imagenet_init, load_official_checkpoint, three_branch_block

TINY = dict(arch="vit_small_patch16_224", img_size=8, patch_size=2, in_chans=1, embed_dim=16, depth=2,
            num_heads=2, mlp_ratio=2.0)


def tiny(num_classes=5, drop_path_rate=0.0, **kw) -> CDTransModel:
    torch.manual_seed(0)
    return CDTransModel(num_classes, drop_path_rate=drop_path_rate, **{**TINY, **kw})


def test_three_branch_shapes_and_gradients():
    m = tiny(drop_path_rate=0.1).train()
    xs, xt = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    out = m(xs, xt)
    for name in ("source", "target", "fusion"):
        logits, feat, glob = out[name]
        assert logits.shape == (4, 5) and feat.shape == glob.shape == (4, 16)
    losses = uda_loss(out, torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 2, 4]))
    assert set(losses) == {"loss", "ce_source", "ce_target", "distill"}
    losses["loss"].backward()
    for name, p in m.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert m.bottleneck.bias.grad is None and not m.bottleneck.bias.requires_grad  # BNNeck bias frozen


def _official_block(blk, xs, xt, xst):
    """The official Block_3_branches math written out plainly (eval: no drop path), float64."""
    a = blk.attn
    h, d = a.num_heads, a.head_dim

    def split(x):
        b, n, _ = x.shape
        return a.qkv(x).reshape(b, n, 3, h, d).permute(2, 0, 3, 1, 4)

    qs, ks, vs = split(blk.norm1(xs))
    qt, kt, vt = split(blk.norm1(xt))

    def att(q, k, v):
        w = ((q @ k.transpose(-2, -1)) * d ** -0.5).softmax(-1)
        o = (w @ v).transpose(1, 2).reshape(q.shape[0], q.shape[2], h * d)
        return a.proj(o)

    xa = xs + att(qs, ks, vs)
    xa = xa + blk.mlp(blk.norm2(xa))
    xb = xt + att(qt, kt, vt)
    xb = xb + blk.mlp(blk.norm2(xb))
    xab = xst + att(qs, kt, vt)  # source queries, target keys/values
    xab = xab + blk.mlp(blk.norm2(xab))
    return xa, xb, xab


def test_block_matches_official_formulation_float64():
    m = tiny().double().eval()
    blk = m.base.blocks[0]
    xs, xt, xst = (torch.randn(3, 17, 16, dtype=torch.float64) for _ in range(3))
    ours = three_branch_block(blk, xs, xt, xst)
    ref = _official_block(blk, xs, xt, xst)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_fusion_stream_starts_from_target_and_only_queries_come_from_source():
    m = tiny().double().eval()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    # Same image in both branches: cross-attention == target self-attention, so fusion == target.
    out = m.forward_three(x, x)
    torch.testing.assert_close(out["fusion"][2], out["target"][2])
    # Hand-built two-token case: when the target's two tokens are identical, softmax over them averages
    # one value vector, so the cross-attention output cannot depend on the source queries.
    blk = m.base.blocks[0]
    tok = torch.randn(1, 1, 16, dtype=torch.float64)
    xt = tok.expand(1, 2, 16).clone()
    xst = torch.randn(1, 2, 16, dtype=torch.float64)
    f1 = three_branch_block(blk, torch.randn(1, 2, 16, dtype=torch.float64), xt, xst)[2]
    f2 = three_branch_block(blk, torch.randn(1, 2, 16, dtype=torch.float64), xt, xst)[2]
    torch.testing.assert_close(f1, f2)
    # ... while different target tokens make it depend on the source queries.
    xt2 = torch.randn(1, 2, 16, dtype=torch.float64)
    g1 = three_branch_block(blk, torch.randn(1, 2, 16, dtype=torch.float64), xt2, xst)[2]
    g2 = three_branch_block(blk, torch.randn(1, 2, 16, dtype=torch.float64), xt2, xst)[2]
    assert not torch.allclose(g1, g2)


def test_target_branch_is_plain_self_attention():
    m = tiny().eval()
    xs, xt = torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(m.forward_three(xs, xt)["target"][0], m(xt))
    two = m.forward_three(xs, xt, fusion=False)  # the self-training ablation's two branches
    assert set(two) == {"source", "target"}
    torch.testing.assert_close(two["target"][0], m(xt))
    torch.testing.assert_close(two["source"][0], m(xs))


def test_bn_neck_updates_in_official_order_source_fusion_target():
    m = tiny().train()
    m.bottleneck.momentum = 0.5
    xs, xt = torch.randn(6, 1, 8, 8), torch.randn(6, 1, 8, 8)
    torch.manual_seed(1)
    out = m(xs, xt)
    expected = torch.zeros(16)
    for branch in ("source", "fusion", "target"):
        expected = 0.5 * expected + 0.5 * out[branch][2].detach().mean(0)
    torch.testing.assert_close(m.bottleneck.running_mean, expected, rtol=1e-5, atol=1e-6)
    assert int(m.bottleneck.num_batches_tracked) == 3


def test_distill_loss_teacher_not_detached_and_value():
    t = torch.tensor([[2.0, 0.0]], requires_grad=True)
    s = torch.tensor([[0.0, 1.0]], requires_grad=True)
    loss = distill_loss(t, s)
    p = F.softmax(t, -1)
    expected = -(p * F.log_softmax(s, -1)).sum()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert t.grad is not None and t.grad.abs().sum() > 0  # gradients reach the fusion (teacher) branch


def _official_state_dict(m: CDTransModel, prefix: str = "") -> dict:
    sd = {prefix + k: (v + 0.01 if v.is_floating_point() else v.clone()) for k, v in m.state_dict().items()}
    d = m.base.embed_dim
    sd[prefix + "base.fc.weight"] = torch.randn(1000, d)  # the unused 1000-way head in released files
    sd[prefix + "base.fc.bias"] = torch.randn(1000)
    return sd


@pytest.mark.parametrize("prefix", ["", "module."])
def test_loads_released_checkpoint_layout(tmp_path, prefix):
    src = tiny()
    sd = _official_state_dict(src, prefix)
    expected_keys = {"base.cls_token", "base.pos_embed", "base.patch_embed.proj.weight",
                     "base.blocks.0.attn.qkv.weight", "base.blocks.1.mlp.fc2.bias", "base.norm.weight",
                     "bottleneck.running_var", "bottleneck.num_batches_tracked", "classifier.weight"}
    assert {prefix + k for k in expected_keys} <= set(sd)
    torch.save(sd, tmp_path / "transformer_40.pth")
    dst = tiny()
    report = load_official_checkpoint(dst, tmp_path / "transformer_40.pth")
    assert sorted(report.skipped) == ["base.fc.bias", "base.fc.weight"]  # after stripping module.
    for k, v in dst.state_dict().items():
        torch.testing.assert_close(v, sd[prefix + k])


def test_released_checkpoint_with_missing_key_fails_loudly(tmp_path):
    sd = _official_state_dict(tiny())
    del sd["classifier.weight"]
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(KeyError, match="classifier.weight"):
        load_official_checkpoint(tiny(), tmp_path / "bad.pth")


def test_deit_distilled_init_drops_dist_token_and_resizes_grid(tmp_path):
    # A DeiT distilled checkpoint in its released layout ({'model': ...}, head + head_dist, dist_token,
    # pos_embed with 2 prefix rows), at a 4x4 grid, loaded into a model with a 4x4 grid and one with 8x8.
    donor = tiny()
    sd = {k[len("base."):]: v.clone() for k, v in donor.state_dict().items() if k.startswith("base.")}
    pos = torch.randn(1, 2 + 16, 16)
    sd.update(pos_embed=pos, dist_token=torch.randn(1, 1, 16), **{"head.weight": torch.randn(1000, 16),
              "head.bias": torch.randn(1000), "head_dist.weight": torch.randn(1000, 16),
              "head_dist.bias": torch.randn(1000)})
    torch.save({"model": sd}, tmp_path / "deit_small_distilled_patch16_224-649709d9.pth")
    m = tiny()
    load_imagenet_init(m, tmp_path / "deit_small_distilled_patch16_224-649709d9.pth")
    torch.testing.assert_close(m.base.pos_embed, torch.cat([pos[:, :1], pos[:, 2:]], 1))
    torch.testing.assert_close(m.base.blocks[0].attn.qkv.weight, sd["blocks.0.attn.qkv.weight"])
    big = tiny(img_size=16)  # 8x8 grid: pos-embed bilinearly resized, CLS row kept
    load_imagenet_init(big, tmp_path / "deit_small_distilled_patch16_224-649709d9.pth")
    assert big.base.pos_embed.shape == (1, 65, 16)
    torch.testing.assert_close(big.base.pos_embed[:, 0], pos[:, 0])
