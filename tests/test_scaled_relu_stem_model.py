"""scaled_relu_stem: stem layout, token grid, parameter/FLOP figures, DeiT loading, token diversity."""
from __future__ import annotations

import math

import pytest
import timm
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from scaled_relu_stem.diversity import (
    layerwise_token_similarity,
    mean_pairwise_cosine,
    mean_pairwise_cosine_reference,
)
from scaled_relu_stem.model import (
    ConvStemEmbed,
    StemConfig,
    conv_norm_act,
    create_stem_vit,
    load_deit_weights,
)
from scaled_relu_stem.train import timm_param_groups

VARIANTS = {
    "scaled_relu": StemConfig(),
    "no_bn": StemConfig(norm="none"),
    "no_relu": StemConfig(act="none"),
    "linear": StemConfig(norm="none", act="none"),
    "xiao": StemConfig(layout="xiao", proj_init="xiao"),
    "volo_stride4": StemConfig(first_stride=4),
}


def tiny_vit(stem: StemConfig, img_size=64, patch_size=16, **kw) -> VisionTransformer:
    args = dict(img_size=img_size, patch_size=patch_size, embed_dim=32, depth=1, num_heads=2, num_classes=5)
    args.update(kw)
    return create_stem_vit(stem, **args)


# ----------------------------------------------------------------------------- stem layout and grid
@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("img_size,patch_size", [(32, 16), (96, 16), (64, 8), (32, 4)])
def test_token_grid_equals_patchify(name, img_size, patch_size):
    stem = VARIANTS[name]
    if stem.first_stride > patch_size:
        pytest.skip("stem stride larger than the patch")
    ref = tiny_vit(StemConfig(layout="patchify"), img_size, patch_size)
    m = tiny_vit(stem, img_size, patch_size)
    assert m.patch_embed.grid_size == ref.patch_embed.grid_size == (img_size // patch_size,) * 2
    assert m.patch_embed.num_patches == ref.patch_embed.num_patches
    assert m.pos_embed.shape == ref.pos_embed.shape
    x = torch.randn(2, 3, img_size, img_size)
    assert m.patch_embed(x).shape == ref.patch_embed(x).shape
    assert m.forward_features(x).shape == ref.forward_features(x).shape


@pytest.mark.parametrize("name", ["scaled_relu", "xiao"])
def test_dynamic_img_size_matches_patchify(name):
    ref = tiny_vit(StemConfig(layout="patchify"), 64, 16, dynamic_img_size=True)
    m = tiny_vit(VARIANTS[name], 64, 16, dynamic_img_size=True)
    x = torch.randn(1, 3, 96, 128)
    assert m.forward_features(x).shape == ref.forward_features(x).shape == (1, 1 + 6 * 8, 32)
    assert m.patch_embed.dynamic_feat_size((96, 128)) == ref.patch_embed.dynamic_feat_size((96, 128))


def test_volo_stem_layout_and_keys():
    """Spec section 2 table: 7x7/2 -> 3x3/1 -> 3x3/1 at 64 channels, each conv -> BN -> ReLU, 8x8/8 proj."""
    m = timm.create_model("deit_small_srstem_patch16_224")
    b = m.patch_embed.backbone
    convs = [l for l in b if isinstance(l, nn.Conv2d)]
    assert [(c.kernel_size[0], c.stride[0], c.padding[0], c.out_channels) for c in convs] == \
        [(7, 2, 3, 64), (3, 1, 1, 64), (3, 1, 1, 64)]
    assert all(c.bias is None for c in convs)
    assert [type(l).__name__ for l in b] == ["Conv2d", "BatchNorm2d", "ReLU"] * 3
    assert m.patch_embed.proj.kernel_size == (8, 8) == m.patch_embed.proj.stride
    assert m.patch_embed.proj.bias is not None
    with torch.no_grad():
        feat = b(torch.randn(1, 3, 224, 224))
    assert feat.shape == (1, 64, 112, 112)
    assert m.patch_embed.grid_size == (14, 14) and m.pos_embed.shape == (1, 197, 384)


def test_ablations_keep_an_affine_shift():
    """Spec pitfall 5: without BN the conv gets a bias; 'no ReLU' keeps BN."""
    no_bn = conv_norm_act(3, 8, 3, 1, norm="none", act="relu")
    assert no_bn[0].bias is not None and not any(isinstance(l, nn.BatchNorm2d) for l in no_bn)
    no_relu = conv_norm_act(3, 8, 3, 1, norm="bn", act="none")
    assert no_relu[0].bias is None and isinstance(no_relu[1], nn.BatchNorm2d) and len(no_relu) == 2


def test_scaled_relu_is_per_channel_bn_then_relu():
    """y_c = ReLU(gamma_c (x_c - mu_c) / sigma_c + beta_c) with batch statistics in training mode."""
    torch.manual_seed(0)
    layers = nn.Sequential(*conv_norm_act(2, 3, 1, 1, norm="bn", act="relu"))
    bn = layers[1]
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, 2.0, -1.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.3, 0.2]))
    x = torch.randn(4, 2, 5, 5)
    y = layers(x)
    z = layers[0](x)
    mu = z.mean(dim=(0, 2, 3), keepdim=True)
    var = z.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    want = torch.relu(bn.weight.view(1, -1, 1, 1) * (z - mu) / torch.sqrt(var + bn.eps) + bn.bias.view(1, -1, 1, 1))
    torch.testing.assert_close(y, want, atol=1e-5, rtol=1e-5)


def test_xiao_layout_widths_and_init():
    m = timm.create_model("deit_small_xiaostem_patch16_224")
    convs = [l for l in m.patch_embed.backbone if isinstance(l, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [48, 96, 192, 384]
    assert all(c.stride == (2, 2) and c.kernel_size == (3, 3) for c in convs)
    assert m.patch_embed.proj.kernel_size == (1, 1) and len(m.blocks) == 11
    w = m.patch_embed.proj.weight.detach()
    assert abs(float(w.std()) - math.sqrt(2 / 384)) < 0.1 * math.sqrt(2 / 384)
    assert float(m.patch_embed.proj.bias.detach().abs().max()) == 0.0


def test_guards_raise_clear_errors():
    with pytest.raises(ValueError, match="not divisible by the stem's total stride"):
        tiny_vit(StemConfig(first_stride=3), 64, 16)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        tiny_vit(StemConfig(), 72, 16)
    with pytest.raises(ValueError, match="stem.layout"):
        tiny_vit(StemConfig(layout="resnet"))
    with pytest.raises(ValueError, match="stem.norm"):
        tiny_vit(StemConfig(norm="layernorm"))
    with pytest.raises(ValueError, match="stem.act"):
        tiny_vit(StemConfig(act="gelu"))
    with pytest.raises(ValueError, match="power-of-two"):
        tiny_vit(StemConfig(layout="xiao"), 60, 12)
    with pytest.raises(ValueError, match="custom needs"):
        tiny_vit(StemConfig(layout="custom", channels=[8], kernels=[3], strides=[]))
    m = tiny_vit(StemConfig(), 64, 16)
    with pytest.raises(ValueError, match="does not match the stem's img_size"):
        m(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="cannot change patch_size"):
        m.patch_embed.set_input_size(patch_size=8)
    with pytest.raises(ValueError, match="no published weights"):
        timm.create_model("deit_tiny_srstem_patch16_224", pretrained=True)


def test_custom_layout_and_set_input_size():
    stem = StemConfig(layout="custom", channels=[8, 16], kernels=[3, 3], strides=[1, 2])
    m = tiny_vit(stem, 32, 4)
    assert isinstance(m.patch_embed, ConvStemEmbed) and m.patch_embed.proj_size == 2
    m.set_input_size(img_size=48)
    assert m.patch_embed.grid_size == (12, 12) and m.pos_embed.shape[1] == 1 + 144
    assert m(torch.randn(1, 3, 48, 48)).shape == (1, 5)


# ----------------------------------------------------------------------------- cost vs spec section 5
def _params_and_gmacs(model: nn.Module) -> tuple[float, float]:
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    return sum(p.numel() for p in model.parameters()) / 1e6, fc.get_total_flops() / 2e9


def test_params_and_flops_match_spec():
    """Spec section 5 [measured, FlopCounterMode MACs, 224]: DeiT-S 22.05M/4.24G, scaled-ReLU stem
    23.41M/5.53G, Xiao 48-96-192-384 stem 22.78M/4.62G, Xiao with depth 11 21.00M/4.27G."""
    p0, g0 = _params_and_gmacs(timm.create_model("deit_small_patch16_224"))
    p1, g1 = _params_and_gmacs(timm.create_model("deit_small_srstem_patch16_224"))
    p2, g2 = _params_and_gmacs(timm.create_model("deit_small_xiaostem_patch16_224", depth=12))
    p3, g3 = _params_and_gmacs(timm.create_model("deit_small_xiaostem_patch16_224"))
    for got, want in [(p0, 22.05), (p1, 23.41), (p2, 22.78), (p3, 21.00)]:
        assert round(got, 2) == pytest.approx(want, abs=0.01)
    for got, want in [(g0, 4.24), (g1, 5.53), (g2, 4.62), (g3, 4.27)]:
        assert got == pytest.approx(want, abs=0.01)
    # the parameter delta by hand: 7x7x3x64 conv + 2 3x3x64x64 convs + 3 BN (gamma, beta) + 8x8x64x384
    # projection, minus DeiT's 16x16x3x384 patch projection (biases cancel)
    delta = 7 * 7 * 3 * 64 + 2 * 9 * 64 * 64 + 3 * 2 * 64 + 8 * 8 * 64 * 384 - 16 * 16 * 3 * 384
    assert round((p1 - p0) * 1e6) == delta == 1_361_472
    # stem MACs by hand at 224: 112^2 maps for the convs, 14^2 for the projection
    stem_macs = (7 * 7 * 3 * 64 + 2 * 9 * 64 * 64) * 112 ** 2 + 8 * 8 * 64 * 384 * 14 ** 2
    assert (g1 - g0) * 1e9 == pytest.approx(stem_macs - 16 * 16 * 3 * 384 * 14 ** 2, rel=1e-6)


# ----------------------------------------------------------------------------- DeiT checkpoints
def _deit_tiny_checkpoint(tmp_path, distilled=False):
    ref = timm.create_model("deit_tiny_patch16_224", num_classes=10)
    sd = ref.state_dict()
    if distilled:  # DeiT distilled layout: dist_token, head_dist, one more pos-embed row
        sd["dist_token"] = torch.zeros(1, 1, 192)
        sd["head_dist.weight"], sd["head_dist.bias"] = torch.zeros(10, 192), torch.zeros(10)
        sd["pos_embed"] = torch.cat([sd["pos_embed"][:, :1], torch.zeros(1, 1, 192), sd["pos_embed"][:, 1:]], 1)
    path = tmp_path / "deit.pth"
    torch.save({"model": sd}, path)
    return ref, path


@pytest.mark.parametrize("distilled", [False, True])
def test_deit_checkpoint_loads_except_patch_embed(tmp_path, distilled):
    ref, path = _deit_tiny_checkpoint(tmp_path, distilled)
    m = timm.create_model("deit_tiny_srstem_patch16_224", num_classes=10)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    report = load_deit_weights(m, str(path))
    new_keys = {k for k in m.state_dict() if k.startswith("patch_embed.")}
    if distilled:
        new_keys |= {"head.weight", "head.bias"}
    # BatchNorm fills a missing num_batches_tracked itself, so torch does not report it
    assert set(report.missing) == {k for k in new_keys if not k.endswith("num_batches_tracked")}
    assert "patch_embed.proj.weight" in report.skipped and not report.unexpected
    got, want = m.state_dict(), ref.state_dict()
    for k in got:
        if k in new_keys:
            assert torch.equal(got[k], before[k]), k  # new keys keep their initialisation
        else:
            assert torch.equal(got[k], want[k]), k


def test_deit_checkpoint_with_wrong_shapes_is_rejected(tmp_path):
    ref, path = _deit_tiny_checkpoint(tmp_path)
    sd = torch.load(path, weights_only=True)["model"]
    sd["blocks.0.attn.qkv.weight"] = torch.zeros(10, 10)
    torch.save({"model": sd}, path)
    with pytest.raises(ValueError, match="blocks.0.attn.qkv.weight"):
        load_deit_weights(timm.create_model("deit_tiny_srstem_patch16_224", num_classes=10), str(path))


def test_ema_copies_stem_bn_buffers():
    """Spec pitfall 1: BN running stats must follow into the EMA model: timm ModelEmaV3 (the engine's
    EMA) averages buffers like weights, so with decay 0.5 from zero-initialised stats it holds half."""
    from timm.utils import ModelEmaV3

    m = tiny_vit(StemConfig(), 32, 16)
    ema = ModelEmaV3(m, decay=0.5)
    m.train()
    m(torch.randn(4, 3, 32, 32) * 3 + 1)
    ema.update(m)
    src = dict(m.named_buffers())
    for k, v in ema.module.named_buffers():
        if "running_mean" in k:
            torch.testing.assert_close(v, 0.5 * src[k])
            assert float(v.abs().sum()) > 0


def test_weight_decay_groups_skip_bn_and_bias():
    m = tiny_vit(StemConfig(), 32, 16)
    no_decay, decay = timm_param_groups(m, 0.05)
    names = {id(p): n for n, p in m.named_parameters()}
    nd = {names[id(p)] for p in no_decay["params"]}
    assert {"patch_embed.backbone.1.weight", "patch_embed.backbone.1.bias", "pos_embed", "cls_token",
            "patch_embed.proj.bias"} <= nd
    assert "patch_embed.backbone.0.weight" in {names[id(p)] for p in decay["params"]}
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.05


def test_registered_in_timm():
    names = timm.list_models("*srstem*")
    assert {"deit_tiny_srstem_patch16_224", "deit_small_srstem_patch16_224",
            "deit_base_srstem_patch16_224"} <= set(names)
    m = timm.create_model("deit_tiny_srstem_patch16_224", num_classes=3, stem=StemConfig(act="none"))
    assert not any(isinstance(l, nn.ReLU) for l in m.patch_embed.backbone)


# ----------------------------------------------------------------------------- token diversity
def test_mean_pairwise_cosine_hand_values():
    same = torch.tensor([[[1.0, 2.0], [2.0, 4.0], [0.5, 1.0]]])
    assert float(mean_pairwise_cosine(same)) == pytest.approx(1.0)
    eye = torch.eye(4).unsqueeze(0)
    assert float(mean_pairwise_cosine(eye)) == pytest.approx(0.0, abs=1e-7)
    opposite = torch.tensor([[[1.0, 0.0], [-3.0, 0.0]]])
    assert float(mean_pairwise_cosine(opposite)) == pytest.approx(-1.0)
    # pairs: (a,b) 1/sqrt2, (a,c) 0, (b,c) 1/sqrt2 -> mean sqrt2/3
    three = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]])
    assert float(mean_pairwise_cosine(three)) == pytest.approx(math.sqrt(2) / 3)
    batch = torch.cat([eye[:, :2, :2], same[:, :2]], dim=0)
    torch.testing.assert_close(mean_pairwise_cosine(batch), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="tokens must be"):
        mean_pairwise_cosine(torch.randn(3, 4))


def test_mean_pairwise_cosine_fast_equals_reference():
    x = torch.randn(3, 17, 8)
    torch.testing.assert_close(mean_pairwise_cosine(x), mean_pairwise_cosine_reference(x))


def test_layerwise_similarity_matches_direct_computation():
    torch.manual_seed(0)
    m = tiny_vit(StemConfig(), 32, 8, depth=2).eval()
    x = torch.randn(3, 3, 32, 32)
    sims = layerwise_token_similarity(m, x)
    assert len(sims) == 3
    with torch.no_grad():
        stem = m.patch_embed(x)
        t = m.norm_pre(m._pos_embed(stem))
        t1 = m.blocks[0](t)
        t2 = m.blocks[1](t1)
    assert sims[0] == pytest.approx(float(mean_pairwise_cosine(stem).mean()), abs=1e-6)
    assert sims[2] == pytest.approx(float(mean_pairwise_cosine(t2[:, 1:]).mean()), abs=1e-6)
