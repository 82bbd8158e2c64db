"""timm wiring: registered names really use k-NN attention, DeiT weights load unchanged, k = N is stock."""
from __future__ import annotations

import pytest
import timm
import torch
from timm.layers import Attention
from timm.models.swin_transformer import WindowAttention

import knn_attention  # noqa: F401  (registers the names)
from knn_attention.convert import dense_to_knn
from knn_attention.model import KNNAttention, KNNWindowAttention, knn_modules, set_topk
from knn_attention.train import ModelConfig, build_model
from shared.backbones import load_weights

SMALL_VIT = dict(img_size=32, patch_size=8, embed_dim=48, depth=3, num_heads=3, num_classes=7)  # 16+1 tokens


@pytest.mark.parametrize("name,base", [("knn_deit_tiny_patch16_224", "deit_tiny_patch16_224"),
                                       ("knn_deit_small_patch16_224", "deit_small_patch16_224"),
                                       ("knn_deit_base_patch16_224", "deit_base_patch16_224")])
def test_registered_deit_uses_knn_in_every_block_with_official_k(name, base):
    kw = dict(depth=2, num_classes=5)  # shallow copies keep the test fast; block type is what matters
    m = timm.create_model(name, **kw)
    assert len(m.blocks) == 2
    assert all(type(b.attn) is KNNAttention and b.attn.topk == 100 for b in m.blocks)
    dense = timm.create_model(base, pretrained=False, **kw)
    assert all(type(b.attn) is Attention for b in dense.blocks)
    # Identical state-dict keys and shapes: DeiT checkpoints load with no renaming.
    sd = dense.state_dict()
    assert {k: v.shape for k, v in m.state_dict().items()} == {k: v.shape for k, v in sd.items()}
    m.load_state_dict(sd, strict=True)


def test_registered_swin_swaps_every_window_attention():
    m = timm.create_model("knn_swin_tiny_patch4_window7_224", depths=(1, 1, 1, 1), num_classes=3)
    assert not [x for x in m.modules() if type(x) is WindowAttention]
    mods = knn_modules(m)
    assert len(mods) == 4 and all(type(x) is KNNWindowAttention and x.topk == 0.5 for x in mods)
    assert m(torch.randn(1, 3, 224, 224)).shape == (1, 3)


def test_pretrained_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="no k-NN weights"):
        timm.create_model("knn_deit_tiny_patch16_224", pretrained=True)


def test_k_equal_n_gives_stock_logits_after_loading_the_same_state_dict(tmp_path):
    torch.manual_seed(0)
    stock = timm.create_model("deit_tiny_patch16_224", pretrained=False, **SMALL_VIT).double().eval()
    path = tmp_path / "deit_official_format.pth"
    torch.save({"model": stock.state_dict(), "epoch": 299}, path)  # DeiT main.py checkpoint layout
    knn = timm.create_model("knn_deit_tiny_patch16_224", topk=17, **SMALL_VIT).double().eval()
    load_weights(knn, path)  # strict
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    torch.testing.assert_close(knn(x), stock(x), atol=1e-10, rtol=0)
    set_topk(knn, 4)
    assert (knn(x) - stock(x)).abs().max() > 1e-4  # the k-NN path is really live


def test_k_larger_than_tokens_fails_with_one_line_naming_k_and_n():
    m = timm.create_model("knn_deit_tiny_patch16_224", **SMALL_VIT)  # 17 tokens, k = 100
    with pytest.raises(ValueError, match=r"k=100 > N=17"):
        m(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"k=100 > N=17"):
        build_model(ModelConfig(arch="deit_tiny_patch16_224", attention="knn", topk=100, **SMALL_VIT))


def test_per_layer_topk_and_dense_to_knn():
    m = timm.create_model("deit_tiny_patch16_224", pretrained=False, **SMALL_VIT)
    dense_to_knn(m, [17, 8, 0.25])
    assert [b.attn.topk for b in m.blocks] == [17, 8, 0.25]
    with pytest.raises(ValueError, match="3 attention modules"):
        set_topk(m, [1, 2])
    with pytest.raises(ValueError, match="no k-NN"):
        set_topk(timm.create_model("deit_tiny_patch16_224", pretrained=False, **SMALL_VIT), 3)


def test_build_model_dense_and_knn_share_parameters_and_differ_only_in_attention():
    cfg = dict(arch="vit_tiny_patch16_224", num_classes=10, drop_path=0.0, img_size=32, patch_size=4, in_chans=1,
               embed_dim=48, depth=2, num_heads=3)
    d = build_model(ModelConfig(attention="dense", **cfg))
    k = build_model(ModelConfig(attention="knn", topk=32, **cfg))
    assert all(type(b.attn) is Attention for b in d.blocks)
    assert all(type(b.attn) is KNNAttention and b.attn.topk == 32 for b in k.blocks)
    assert sum(p.numel() for p in d.parameters()) == sum(p.numel() for p in k.parameters())
    with pytest.raises(ValueError, match="dense | knn"):
        build_model(ModelConfig(attention="sparse", **cfg))


def test_knn_model_trains_backward_through_kept_logits_only():
    torch.manual_seed(0)
    m = timm.create_model("knn_deit_tiny_patch16_224", topk=3, **SMALL_VIT)
    m(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters() if p.requires_grad)


def test_init_weights_are_strict_except_a_new_head(tmp_path):
    """``model.init_weights`` from a file of another model is a one-line error naming the file (it used to
    load with strict=False: a wrong file trained from scratch with only a printed report)."""
    from shared.backbones import CheckpointMismatchError

    m = ModelConfig(arch="vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                    num_classes=10, attention="knn", topk_ratio=0.5)
    src = build_model(m)
    torch.save({k: v for k, v in src.state_dict().items() if not k.startswith("head.")}, tmp_path / "ok.pth")
    build_model(ModelConfig(**{**m.__dict__, "init_weights": str(tmp_path / "ok.pth")}))  # new head: fine
    torch.save({"encoder.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointMismatchError, match="other.pth"):
        build_model(ModelConfig(**{**m.__dict__, "init_weights": str(tmp_path / "other.pth")}))


def test_conv_stem_keeps_the_token_grid_and_is_local():
    """model.stem=conv: same 8x8 = 64 tokens and width as the linear patch embedding; a token sees only its
    neighbourhood (two 3x3 stride-2 convs: receptive field 7 px around its 4x4 cell), never the far side."""
    from knn_attention.stem import ConvPatchEmbed

    cfg = dict(arch="vit_tiny_patch16_224", num_classes=10, img_size=32, patch_size=4, in_chans=1, embed_dim=48,
               depth=1, num_heads=3, global_pool="avg")
    conv = build_model(ModelConfig(attention="knn", topk=32, stem="conv", **cfg))
    lin = build_model(ModelConfig(attention="knn", topk=32, **cfg))
    assert isinstance(conv.patch_embed, ConvPatchEmbed) and conv.patch_embed.num_patches == 64
    x = torch.randn(2, 1, 32, 32)
    assert conv.patch_embed(x).shape == lin.patch_embed(x).shape == (2, 64, 48)
    # by hand: 2 stride-2 convs 1 -> 24 -> 48 (no bias, BN) and a 1x1 48 -> 48 (bias)
    n_stem = 9 * 24 + 2 * 24 + 9 * 24 * 48 + 2 * 48 + 48 * 48 + 48
    assert sum(p.numel() for p in conv.patch_embed.parameters()) == n_stem
    stem = conv.patch_embed.eval()
    for m in stem.proj:
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.constant_(m.bias, 10.0)  # every ReLU open: the stem is linear, its support exact
    x = torch.randn(1, 1, 32, 32, requires_grad=True)
    stem(x)[0, 0].sum().backward()  # token (0, 0): conv 2's output 0 sees conv 1's -1..1 = pixels -3..3
    seen = x.grad[0, 0].abs() > 0
    assert seen[:4, :4].all() and int(seen.sum()) == 16
    with pytest.raises(ValueError, match="power of 2"):
        ConvPatchEmbed(img_size=30, patch_size=6, in_chans=1, embed_dim=48)
    with pytest.raises(ValueError, match="model.stem"):
        build_model(ModelConfig(attention="dense", stem="convnext", **cfg))


def test_conv_stem_is_scaled_relu_stems_xiao_stem_up_to_names_and_init_stream():
    """Why the two conv stems stay two modules: knn's ``ConvPatchEmbed`` computes scaled_relu_stem's
    ``ConvStemEmbed(stem=StemConfig(layout='xiao'))`` (3x3 s2 conv-BN-ReLU x log2(p), then a 1x1 projection),
    but its parameters are ``proj.{i}`` where that one has ``backbone.{i}`` + ``proj``, and its seeded init
    comes after the discarded linear projection its ``PatchEmbed`` base draws: swapping one for the other would
    rename checkpoint keys and change the frozen miniature's seeded numbers."""
    from timm.layers import PatchEmbed

    from knn_attention.stem import ConvPatchEmbed
    from scaled_relu_stem.model import ConvStemEmbed, StemConfig

    kw = dict(img_size=32, patch_size=4, in_chans=1, embed_dim=48)
    torch.manual_seed(0)
    knn = ConvPatchEmbed(**kw)
    torch.manual_seed(0)
    srs = ConvStemEmbed(**kw, stem=StemConfig(layout="xiao"))
    ka, kb = list(knn.state_dict()), list(srs.state_dict())
    assert ka != kb and [k.split(".", 1)[1] for k in ka[:-2]] == [k.split(".", 1)[1] for k in kb[:-2]]
    assert (ka[-2:], kb[-2:]) == (["proj.6.weight", "proj.6.bias"], ["proj.weight", "proj.bias"])
    assert not torch.equal(knn.state_dict()[ka[0]], srs.state_dict()[kb[0]])  # other init draws
    torch.manual_seed(0)
    PatchEmbed(**kw)  # the draw knn's base class makes first
    srs = ConvStemEmbed(**kw, stem=StemConfig(layout="xiao"))
    assert all(torch.equal(a, b) for a, b in zip(knn.state_dict().values(), srs.state_dict().values()))
    with torch.no_grad():
        for p in knn.parameters():
            p.normal_()
    srs.load_state_dict(dict(zip(kb, knn.state_dict().values())), strict=True)
    x = torch.randn(3, 1, 32, 32)
    assert torch.equal(knn.train()(x), srs.train()(x))  # batch statistics
    assert torch.equal(knn.eval()(x), srs.eval()(x))  # running statistics, updated alike by the pass above
