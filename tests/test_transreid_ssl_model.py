"""TransReID-SSL: stems, ViT, ReID head and triplet (DINO: tests/test_shared_dino.py)."""
import math

import torch
import torch.nn.functional as F

from transreid_ssl.losses import euclidean_dist, hard_example_mining, reid_loss, soft_margin_triplet
from transreid_ssl.model import IBN, ConvStem, ReIDModel, ReIDViT


def tiny_vit(stem="patchify", **kw):
    return ReIDViT((32, 16), 8, 32, 2, 2, 2.0, 0.0, stem=stem, stem_hidden=8, stem_kernel=3, **kw)


def test_ibn_splits_instance_and_batch_norm():
    torch.manual_seed(0)
    m = IBN(8).eval()
    x = torch.randn(3, 8, 5, 4) * 3 + 2
    y = m(x)
    # IN half: per-sample, per-channel zero mean / unit std, even in eval mode (no running stats)
    assert torch.allclose(y[:, :4].mean((2, 3)), torch.zeros(3, 4), atol=1e-5)
    assert torch.allclose(m(x[:1])[:, :4], y[:1, :4], atol=1e-6)
    # BN half in eval: running stats (init 0/1) -> identity up to eps
    assert torch.allclose(y[:, 4:], x[:, 4:] / math.sqrt(1 + 1e-5), atol=1e-5)


def test_official_ics_stem_key_layout_and_grid():
    stem = ConvStem(3, 384, 16, 64, 7)
    shapes = {k: tuple(v.shape) for k, v in stem.state_dict().items()}
    assert shapes["conv.0.weight"] == (64, 3, 7, 7)
    assert shapes["conv.1.IN.weight"] == (32,) and shapes["conv.1.BN.running_mean"] == (32,)
    assert shapes["conv.3.weight"] == (64, 64, 3, 3) and shapes["conv.6.weight"] == (64, 64, 3, 3)
    assert shapes["conv.4.IN.bias"] == (32,) and shapes["conv.7.running_var"] == (64,)
    assert shapes["proj.weight"] == (384, 64, 8, 8) and shapes["proj.bias"] == (384,)
    assert stem(torch.randn(2, 3, 256, 128)).shape == (2, 128, 384)  # 16x8 tokens, as patchify


def test_vit_small_flat_keys_match_official_layout():
    vit = ReIDViT()
    sd = vit.state_dict()
    assert tuple(sd["pos_embed"].shape) == (1, 129, 384) and tuple(sd["cls_token"].shape) == (1, 1, 384)
    assert tuple(sd["patch_embed.proj.weight"].shape) == (384, 3, 16, 16)
    assert tuple(sd["blocks.11.attn.qkv.weight"].shape) == (1152, 384) and "blocks.0.attn.qkv.bias" in sd
    assert tuple(sd["blocks.0.mlp.fc1.weight"].shape) == (1536, 384)
    assert len(sd) == 4 + 12 * 12 + 2  # cls, pos, proj w/b; 12 tensors a block; final norm
    assert vit.blocks[0].norm1.eps == 1e-6


def test_pos_embed_resampling_is_dinos():
    torch.manual_seed(0)
    vit = tiny_vit()
    assert vit.interpolate_pos_encoding(4, 2) is vit.pos_embed  # native grid: unchanged
    got = vit.interpolate_pos_encoding(2, 1)
    grid = vit.pos_embed[:, 1:].reshape(1, 4, 2, -1).permute(0, 3, 1, 2)
    ref = F.interpolate(grid, scale_factor=(2.1 / 4, 1.1 / 2), mode="bicubic").flatten(2).transpose(1, 2)
    assert torch.equal(got[:, 1:], ref) and torch.equal(got[:, :1], vit.pos_embed[:, :1])
    assert vit(torch.randn(2, 3, 16, 8)).shape == (2, 32)


def test_batch_hard_soft_margin_triplet_by_hand():
    feat = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.0, 5.0]], requires_grad=True)
    y = torch.tensor([0, 0, 1, 1])
    d_ap, d_an = hard_example_mining(euclidean_dist(feat, feat), y)
    assert torch.allclose(d_ap, torch.tensor([3.0, 3.0, 4.0, 4.0]), atol=1e-4)
    assert torch.allclose(d_an, torch.tensor([1.0, math.sqrt(10), 1.0, 5.0]), atol=1e-4)
    loss = soft_margin_triplet(feat, y)
    assert torch.allclose(loss, F.softplus(d_ap - d_an).mean())
    loss.backward()
    assert torch.isfinite(feat.grad).all()


def test_reid_model_neck_and_losses():
    torch.manual_seed(0)
    m = ReIDModel(tiny_vit(), num_classes=4)
    assert not m.bottleneck.bias.requires_grad and m.classifier.bias is None
    x, y = torch.randn(8, 3, 32, 16), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    logits, feat = m(x)
    out = reid_loss(logits, feat, y)
    assert logits.shape == (8, 4) and feat.shape == (8, 32)
    assert torch.allclose(out["loss"], out["id"] + out["triplet"])
    m.eval()
    assert torch.allclose(m(x), m.base(x))  # test feature = pre-BN global feature
    m.neck_feat = "after"
    assert torch.allclose(m(x), m.bottleneck(m.base(x)))


def test_every_config_loads_and_names_its_recipe():
    from pathlib import Path

    from shared.config import load_config
    from transreid_ssl.train import TransReIDSSLConfig, build_backbone

    for path in sorted(Path("transreid_ssl/configs").glob("*.yaml")):
        cfg = load_config(path, TransReIDSSLConfig, [])
        want = "dino" if path.name.startswith(("dino", "base_dino")) else \
            "usl" if path.name.startswith(("usl", "uda", "base_usl")) else "reid"
        assert cfg.stage == want, path.name
        if "vit-small" in path.name:
            assert (cfg.model.embed_dim, cfg.model.num_heads) == (384, 6)
            assert cfg.model.stem == ("ics" if "-ics" in path.name else "patchify"), path.name
        if "vit-base" in path.name:
            assert (cfg.model.embed_dim, cfg.model.num_heads) == (768, 12)
        if "cfs60" in path.name:
            assert cfg.data.keep_num == 2508146
    cfg = load_config("transreid_ssl/configs/transreid_vit-base-ics_1xb64-120e_market1501.yaml", TransReIDSSLConfig, [])
    assert build_backbone(cfg.model).grid == (24, 8)  # 384x128 -> 24x8 tokens
