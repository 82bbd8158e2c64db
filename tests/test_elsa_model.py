"""ELSA-Swin: parameter counts of the released sizes, timm names, structure, and the checkpoint remap
(official ELSASwin layout, built here in that format) loaded strictly."""
from __future__ import annotations

import argparse

import pytest
import timm
import torch
from timm.models.swin_transformer import SwinTransformerBlock, WindowAttention, get_relative_position_index

from elsa.checkpoint import (
    load_official_checkpoint,
    official_relative_id,
    official_to_timm,
    timm_to_official,
)
from elsa.model import ELSABlock, elsa_swin

MICRO = dict(img_size=32, in_chans=1, patch_size=2, window_size=4, embed_dim=32, depths=(2, 2, 2),
             num_heads=(2, 4, 8), num_classes=10, elsa_kernel=3, group_width=4, tile=4)


def n_params(m: torch.nn.Module) -> float:
    return sum(p.numel() for p in m.parameters()) / 1e6


@pytest.mark.parametrize("name,expected", [("elsa_swin_tiny", 29.14), ("elsa_swin_small", 52.87),
                                           ("elsa_swin_base", 92.68)])
def test_parameter_counts_match_the_release(name, expected):
    """README: 29M / 53M / 93M; exact counts of the official model with lam=0, gamma=1, k=7, gw 4/8/8."""
    with torch.device("meta"):
        m = timm.create_model(name)
    assert round(n_params(m), 2) == expected


def test_structure_qk_width_and_drop_path():
    with torch.device("meta"):
        tiny = timm.create_model("elsa_swin_tiny", drop_path_rate=0.2)
        base = timm.create_model("elsa_swin_base")
    assert [tiny.layers[i].blocks[0].attn.dim_qk for i in range(3)] == [64, 128, 256]  # gw 4
    assert [base.layers[i].blocks[0].attn.dim_qk for i in range(3)] == [88, 176, 344]  # gw 8, rounded up
    for i in range(3):
        assert all(isinstance(b, ELSABlock) for b in tiny.layers[i].blocks)
    assert all(isinstance(b, SwinTransformerBlock) for b in tiny.layers[3].blocks)
    a = tiny.layers[0].blocks[0].attn
    assert (a.lam, a.gamma, a.kernel_size, a.scale) == (0, 1, 7, 1)
    assert tuple(a.ghost_head.shape) == (1, 96, 7, 7)  # additive ghost only
    rates = [b.drop_path.drop_prob if hasattr(b.drop_path, "drop_prob") else 0.0
             for i in range(3) for b in tiny.layers[i].blocks]
    assert rates == pytest.approx(torch.linspace(0, 0.2, 12)[:10].tolist())
    with pytest.raises(ValueError, match="nothing is downloaded"):
        timm.create_model("elsa_swin_tiny", pretrained=True)


def test_micro_model_trains_one_step():
    torch.manual_seed(0)
    m = elsa_swin(**MICRO)
    x, y = torch.randn(4, 1, 32, 32), torch.randint(0, 10, (4,))
    loss = torch.nn.functional.cross_entropy(m(x), y)
    loss.backward()
    g = m.layers[0].blocks[0].attn.ghost_head.grad
    assert g is not None and g.abs().sum() > 0
    assert m.layers[0].blocks[0].attn.attn[0].weight.grad.abs().sum() > 0


def official_window_attention(x, rb, relative_id, pre_w, pre_b, post_w, post_b, heads):
    """Transcription of the official stage-3 ``WindowAttention.forward`` (no mask)."""
    b_, n, c = x.shape
    feat = (x @ pre_w.t() + pre_b).reshape(b_, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    v, q, k = feat[0], feat[1], feat[2]  # the official order
    attn = q @ k.transpose(-2, -1) * (c // heads) ** -0.5 + rb[:, relative_id].reshape(1, heads, n, n)
    out = (attn.softmax(-1) @ v).transpose(1, 2).reshape(b_, n, c)
    return out @ post_w.t() + post_b


def test_official_relative_index_is_the_mirror_of_timms():
    for w in (2, 4, 7):
        assert torch.equal(official_relative_id(w), (2 * w - 1) ** 2 - 1 - get_relative_position_index(w, w).view(-1))


def test_stage3_remap_gives_the_same_attention_output():
    """Random weights in the official layout -> remapped into timm's WindowAttention -> same output."""
    torch.manual_seed(0)
    c, heads, w = 16, 2, 4
    rb = torch.randn(heads, (2 * w - 1) ** 2)
    rid = official_relative_id(w)
    pre_w, pre_b = torch.randn(3 * c, c), torch.randn(3 * c)
    post_w, post_b = torch.randn(c, c), torch.randn(c)
    sd = {"layers.3.blocks.0.attn.rb": rb, "layers.3.blocks.0.attn.relative_id": rid,
          "layers.3.blocks.0.attn.pre_proj.weight": pre_w, "layers.3.blocks.0.attn.pre_proj.bias": pre_b,
          "layers.3.blocks.0.attn.post_proj.weight": post_w, "layers.3.blocks.0.attn.post_proj.bias": post_b}
    ours = {k.removeprefix("layers.4.blocks.0.attn.").removeprefix("layers.3.blocks.0.attn."): v
            for k, v in official_to_timm(sd).items()}
    attn = WindowAttention(c, heads, window_size=w).eval()
    attn.load_state_dict(ours, strict=True)
    x = torch.randn(3, w * w, c)
    want = official_window_attention(x, rb, rid, pre_w, pre_b, post_w, post_b, heads)
    torch.testing.assert_close(attn(x), want, rtol=1e-5, atol=1e-5)


def _official_file(tmp_path, model, ema_model=None):
    """A checkpoint as timm 0.4.9's CheckpointSaver writes it (args is an argparse.Namespace)."""
    sd = timm_to_official(model.state_dict(), window_size=4)
    obj = {"epoch": 309, "arch": "elsa_swin_micro", "state_dict": sd, "version": 2,
           "args": argparse.Namespace(model="elsa_swin_micro", lr=1e-3), "metric": 12.5}
    if ema_model is not None:
        obj["state_dict_ema"] = timm_to_official(ema_model.state_dict(), window_size=4)
    path = tmp_path / "elsa_micro.pth"
    torch.save(obj, path)
    return path, sd


def test_official_layout_keys_and_strict_load(tmp_path):
    torch.manual_seed(0)
    src, ema = elsa_swin(**MICRO).eval(), elsa_swin(**MICRO).eval()
    path, sd = _official_file(tmp_path, src, ema)
    # spec section 6: downsample at the end of stages 0..n-2, head.*, window-attention names in the last stage
    for key in ("layers.0.downsample.reduction.weight", "layers.1.downsample.norm.weight", "head.weight",
                "layers.0.blocks.1.attn.attn.0.weight", "layers.0.blocks.0.attn.ghost_head",
                "layers.2.blocks.1.attn.rb", "layers.2.blocks.1.attn.relative_id",
                "layers.2.blocks.0.attn.pre_proj.weight", "layers.2.blocks.0.attn.post_proj.bias"):
        assert key in sd, key
    assert not any(k.startswith("layers.2.downsample") or "head.fc" in k for k in sd)
    x = torch.randn(2, 1, 32, 32)
    for use_ema, ref in ((False, src), (True, ema)):
        dst = elsa_swin(**MICRO).eval()
        load_official_checkpoint(dst, path, use_ema=use_ema)
        torch.testing.assert_close(dst(x), ref(x))


def test_strict_load_reports_missing_keys_and_wrong_group_width(tmp_path):
    torch.manual_seed(0)
    src = elsa_swin(**MICRO)
    path, sd = _official_file(tmp_path, src)
    del sd["layers.1.blocks.0.attn.ghost_head"]
    torch.save({"state_dict": sd}, tmp_path / "broken.pth")
    with pytest.raises(KeyError, match="ghost_head"):
        load_official_checkpoint(elsa_swin(**MICRO), tmp_path / "broken.pth")
    with pytest.raises(ValueError, match=r"attn\.attn\.0"):  # spec pitfall 8: gw changes the conv shapes
        load_official_checkpoint(elsa_swin(**{**MICRO, "group_width": 8}), path)
    with pytest.raises(KeyError, match="state_dict_ema"):
        load_official_checkpoint(elsa_swin(**MICRO), path, use_ema=True)
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        load_official_checkpoint(elsa_swin(**MICRO), tmp_path / "absent.pth")
