"""TransFGU model pieces: windows, crops, k-means, CAM (Eq. CAM), decoder key layout, DINO weight loading."""
import pytest
import torch
import torch.nn.functional as F

from transfgu.model import (
    MaskTransformer,
    box_anchors,
    cam_pseudo_labels,
    cls_attention,
    create_encoder,
    encode,
    fg_bg_crops,
    kmeans,
    load_dino_encoder,
    mass_binarize,
)


def tiny_vit():
    torch.manual_seed(0)
    return create_encoder(embed_dim=32, depth=2, num_heads=2, patch_size=8, pretrain_size=32)


def test_window_counts_match_official():
    assert len(box_anchors(80, 80)) == 142  # COCO, s = .5 .4 .3 .2
    assert len(box_anchors(80, 80, (0.6, 0.5, 0.4, 0.3))) == 70  # VOC
    assert len(box_anchors(80, 160)) == 306  # Cityscapes
    a = box_anchors(10, 10, (0.4,))  # b = 4: a centred box |d| <= 2 is 5 x 5 tokens
    assert a.shape[1:] == (10, 10) and int(a[0].sum()) == 25


def test_mass_binarize_keeps_top_80_percent_of_mass():
    g = torch.tensor([[[0.5, 0.3], [0.15, 0.05]]])
    # ascending 0.05, 0.15, 0.3, 0.5 -> cumsum .05 .2 .5 1.0 -> keep where > .2 (strictly)
    assert mass_binarize(g).tolist() == [[[1.0, 1.0], [0.0, 0.0]]]


def test_fg_bg_crops_thresholds_and_official_slice():
    img = torch.arange(3 * 16 * 16, dtype=torch.float32).view(3, 16, 16)
    anchors = torch.zeros(2, 4, 4, dtype=torch.bool)
    anchors[0, :2, :2] = True  # top-left quarter: all fg
    anchors[1, 2:, 2:] = True  # bottom-right: all bg
    fg = torch.zeros(4, 4, dtype=torch.bool)
    fg[:2, :2] = True
    f, b = fg_bg_crops(img, fg, anchors, (7, 7))
    assert f.shape == (1, 3, 7, 7) and b.shape == (1, 3, 7, 7)
    # the official slice [y0:y1] with y1 = last index drops the last row/column: 8 px window -> 7 px crop
    assert torch.allclose(f[0], img[:, 0:7, 0:7])
    f2, b2 = fg_bg_crops(img, fg, anchors, (7, 7), split=False)
    assert len(f2) == 2 and len(b2) == 0


def test_kmeans_recovers_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([c + 0.1 * torch.randn(50, 2, generator=g) for c in centres])
    mu = kmeans(x, 3, seed=1)
    d = torch.cdist(mu, centres)
    assert d.min(1).values.max() < 0.1 and len(set(d.argmin(1).tolist())) == 3


def test_cam_matches_manual_gradient_and_restores_mode():
    vit = tiny_vit().train()
    x = torch.randn(3, 3, 32, 32)
    mu = torch.randn(2, 32)
    cam = cam_pseudo_labels(vit, x, mu, 8)
    assert cam.shape == (3, 2, 4, 4) and vit.training
    vit.eval()
    z, _, attn = encode(vit, x.clone().requires_grad_(True))
    a_bar = cls_attention(attn.detach(), 4, 4)
    a_bar = a_bar / a_bar.amax((1, 2), keepdim=True)
    for c in range(2):
        loss = (1 - F.cosine_similarity(z, mu[c][None], dim=-1)).mean()
        g = cls_attention(torch.autograd.grad(loss, attn, retain_graph=True)[0], 4, 4)
        big = F.relu(-g)
        mask = mass_binarize(big)
        want = (a_bar + big * mask) * (g <= 0).float()
        assert torch.allclose(cam[:, c], want, atol=1e-6)
    wrong = cam_pseudo_labels(vit, x, mu, 8, sign=1.0)
    assert not torch.allclose(wrong, cam)


def official_decoder_state(c: int, d: int = 384, mlp: int = 1536) -> dict:
    sd = {"cls_emb": torch.randn(1, c, d), "proj_dec.weight": torch.randn(d, d), "proj_dec.bias": torch.randn(d),
          "proj_patch": torch.randn(d, d), "proj_classes": torch.randn(d, d),
          "decoder_norm.weight": torch.randn(d), "decoder_norm.bias": torch.randn(d),
          "mask_norm.weight": torch.randn(c), "mask_norm.bias": torch.randn(c)}
    for i in range(2):
        p = f"blocks.{i}."
        sd |= {p + "norm1.weight": torch.randn(d), p + "norm1.bias": torch.randn(d), p + "norm2.weight": torch.randn(d),
               p + "norm2.bias": torch.randn(d), p + "attn.qkv.weight": torch.randn(3 * d, d),
               p + "attn.proj.weight": torch.randn(d, d), p + "attn.proj.bias": torch.randn(d),
               p + "mlp.fc1.weight": torch.randn(mlp, d), p + "mlp.fc1.bias": torch.randn(mlp),
               p + "mlp.fc2.weight": torch.randn(d, mlp), p + "mlp.fc2.bias": torch.randn(d)}
    return sd


def test_decoder_loads_released_layout_strict_and_outputs_shapes():
    dec = MaskTransformer(27)
    sd = official_decoder_state(27)
    dec.load_state_dict(sd, strict=True)
    assert set(dec.state_dict()) == set(sd)
    logits, emb = dec.eval()(torch.randn(2, 40 * 40, 384), (40, 40))
    assert logits.shape == (2, 27, 40, 40) and emb.shape == (2, 27, 384)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2, 27), atol=1e-5)
    # mask_norm is a LayerNorm over the class axis: with unit affine, zero mean / unit variance across C
    with torch.no_grad():
        dec.mask_norm.weight.fill_(1)
        dec.mask_norm.bias.zero_()
    logits, _ = dec(torch.randn(1, 16, 384), (4, 4))
    assert torch.allclose(logits.mean(1), torch.zeros(1, 4, 4), atol=1e-4)
    assert torch.allclose(logits.var(1, unbiased=False), torch.ones(1, 4, 4), atol=0.1)  # eps 1e-5 vs small cos spread


def test_decoder_gradients_reach_class_embeddings():
    dec = MaskTransformer(5, d_encoder=16, d_model=16, n_layers=1, n_heads=2, mlp_dim=32)
    logits, _ = dec(torch.randn(2, 9, 16), (3, 3))
    logits.sum().backward()
    assert dec.cls_emb.grad is not None and dec.cls_emb.grad.abs().sum() > 0


def test_dino_checkpoint_layouts_load_strict(tmp_path):
    src = tiny_vit()
    flat = {k: v.clone() for k, v in src.state_dict().items()}
    torch.save(flat, tmp_path / "dino_pretrain.pth")
    full = {"teacher": {f"backbone.{k}": v for k, v in flat.items()} | {"head.last_layer.weight_g": torch.ones(4, 1)},
            "student": {f"module.backbone.{k}": v * 0 for k, v in flat.items()}, "epoch": 3}
    torch.save(full, tmp_path / "checkpoint.pth")
    for name in ("dino_pretrain.pth", "checkpoint.pth"):
        dst = create_encoder(embed_dim=32, depth=2, num_heads=2, patch_size=8, pretrain_size=32)
        load_dino_encoder(dst, tmp_path / name)
        assert all(torch.equal(dst.state_dict()[k], v) for k, v in flat.items())
    bad = {k: v for k, v in flat.items() if k != "norm.weight"}
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(KeyError, match="norm.weight"):
        load_dino_encoder(tiny_vit(), tmp_path / "bad.pth")


def _dino_restated(pos_embed, x_img, patch):
    """DINO ``prepare_tokens`` / ``interpolate_pos_encoding`` restated with DINO's own names: ``B, nc, w, h =
    x.shape`` (so DINO's ``w`` is the image *height*) and a scale factor of ``(w0 + 0.1) / sqrt(N)``."""
    _, _, w, h = x_img.shape
    n = pos_embed.shape[1] - 1
    npatch = (w // patch) * (h // patch)
    if npatch == n and w == h:
        return pos_embed
    dim = pos_embed.shape[-1]
    w0, h0 = w // patch + 0.1, h // patch + 0.1
    s = int(n ** 0.5)
    p = F.interpolate(pos_embed[:, 1:].reshape(1, s, s, dim).permute(0, 3, 1, 2),
                      scale_factor=(w0 / n ** 0.5, h0 / n ** 0.5), mode="bicubic")
    assert int(w0) == p.shape[-2] and int(h0) == p.shape[-1]
    return torch.cat([pos_embed[:, :1], p.permute(0, 2, 3, 1).reshape(1, -1, dim)], dim=1)


@pytest.mark.parametrize("hw", [(32, 32), (48, 48), (40, 80), (80, 40)])
def test_encoder_position_embedding_is_dinos(hw):
    """The encoder resamples its stored grid at forward time exactly as DINO (no load-time resize, no
    antialiasing, scale-factor form), on square and non-square inputs (Cityscapes/LIP are 320x640)."""
    vit = tiny_vit()
    with torch.no_grad():
        vit.pos_embed.normal_()  # a non-smooth grid makes every interpolation difference visible
    x = torch.randn(2, 3, *hw)
    want_pos = _dino_restated(vit.pos_embed, x, 8)
    patches = vit.patch_embed(x)  # (B, h, w, D)
    tokens = torch.cat([vit.cls_token.expand(2, -1, -1), patches.flatten(1, 2)], 1) + want_pos
    want = vit.norm(vit.blocks(tokens))
    got = vit.forward_features(x)
    assert vit.pos_embed.shape[1] == 1 + 4 * 4  # the stored grid is never resized
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    if hw != (32, 32):  # timm's size-based antialiased resampling is a different function
        from timm.layers import resample_abs_pos_embed
        timm_pos = resample_abs_pos_embed(vit.pos_embed, new_size=[hw[0] // 8, hw[1] // 8], num_prefix_tokens=1)
        assert not torch.allclose(timm_pos, want_pos, atol=1e-3)
