"""ELSA-VOLO (the Outlooker -> ELSA block swap), its parameter count by hand, the timm names, the
ablation mixers, the FLOP count's hand term, and the embedded VOLO/ablation configs."""
from __future__ import annotations

import math

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.models.volo import VOLO, Outlooker

from elsa import reproduce
from elsa.complexity import aggregation_macs
from elsa.model import ELSABlock, LocalSelfAttention
from elsa.train import ElsaConfig, build_model
from elsa.volo import VOLO_RESOLUTIONS, ElsaVOLO, set_outlook_kernel
from shared.config import load_config

MICRO = dict(layers=(2, 1), img_size=32, in_chans=1, num_classes=10, patch_size=4, stem_hidden_dim=8,
             embed_dims=(32, 64), num_heads=(2, 4), downsamples=(True, False), post_layers=("ca",))


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_block_swap_parameter_count_by_hand():
    """Only the token mixer changes: ELSA (k 5, gw 8, lam = gamma = 1, no qkv bias) replaces outlook
    attention (k 3, 2 heads); norms and MLPs are the same, so the difference is per block, by hand."""
    c, g, k, gw = 32, 2, 5, 8
    d_qk = math.ceil((c // 3 * 2) / gw) * gw  # 20 -> 24
    elsa = (c * (2 * d_qk + c)                 # pre_proj 1x1, no bias
            + d_qk * gw * k * k + d_qk         # grouped k x k conv (groups d_qk / gw)
            + d_qk * k * k * g + k * k * g     # 1x1 conv -> k^2 maps per head
            + 2 * c * k * k                    # ghost head (mul and add)
            + c * c + c)                       # post_proj
    outlook = c * c + (c * 3 ** 4 * g + 3 ** 4 * g) + (c * c + c)  # v, attn (k^4 per head), proj
    assert (elsa, outlook) == (11290, 7426)
    volo, ours = VOLO(**MICRO), ElsaVOLO(**MICRO)
    assert n_params(ours) - n_params(volo) == 2 * (elsa - outlook)
    assert all(isinstance(b, ELSABlock) for b in ours.network[0])
    assert all(isinstance(b, Outlooker) for b in volo.network[0])
    assert type(ours.network[2][0]) is type(volo.network[2][0])  # the transformer stage is untouched


def test_switches_reach_the_blocks_and_forward_runs():
    m = ElsaVOLO(**MICRO, elsa_kernel=3, lam=0., gamma=1., group_width=4, drop_path_rate=0.1)
    a = m.network[0][0].attn
    assert (a.kernel_size, a.lam, a.gamma, a.dim_qk, a.ghost_head.shape) == (3, 0., 1., 20, (1, 32, 3, 3))
    assert a.scale == 1 and a.pre_proj.bias is None  # qk_scale 1, VOLO's qkv_bias False
    assert m(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    lsa = ElsaVOLO(**MICRO, elsa_mixer="lsa")
    assert isinstance(lsa.network[0][0].attn, LocalSelfAttention)


def test_outlook_kernel_switch_by_hand_and_identity_at_3():
    """``model.outlook_kernel``: outlook attention's weight generator is C -> k^4 per head, so k 5 adds
    (C + 1) * (5^4 - 3^4) * heads per block; rebuilding at k 3 is timm's VOLO (same output, same weights)."""
    c, g = 32, 2
    volo = VOLO(**MICRO)
    k5 = VOLO(**MICRO)
    set_outlook_kernel(k5, 5)
    assert n_params(k5) - n_params(volo) == 2 * (c + 1) * (5 ** 4 - 3 ** 4) * g  # two Outlooker blocks
    a = k5.network[0][0].attn
    assert (a.kernel_size, a.padding, a.stride, a.num_heads) == (5, 2, 2, 2)
    x = torch.randn(2, 1, 32, 32)
    assert k5(x).shape == (2, 10)
    k3 = VOLO(**MICRO)
    set_outlook_kernel(k3, 3)
    k3.load_state_dict(volo.state_dict())
    volo.eval(), k3.eval()
    torch.testing.assert_close(k3(x), volo(x))
    cfg = load_config(reproduce.config_path("default", "volo"), ElsaConfig, ["model.outlook_kernel=5"])
    assert build_model(cfg.model, 10).network[0][1].attn.kernel_size == 5
    with pytest.raises(ValueError, match="positive odd"):
        set_outlook_kernel(k3, 4)


@pytest.mark.parametrize("size", sorted(VOLO_RESOLUTIONS))
def test_every_volo_variant_is_registered(size):
    for res in VOLO_RESOLUTIONS[size]:
        name = f"elsa_volo_{size}_{res}"
        with torch.device("meta"):
            ours, base = timm.create_model(name), timm.create_model(f"volo_{size}_{res}")
        assert ours.pos_embed.shape == base.pos_embed.shape  # same resolution
        assert abs(n_params(ours) - n_params(base)) / n_params(base) < 0.01
    with pytest.raises(ValueError, match="nothing is downloaded"):
        timm.create_model(f"elsa_volo_{size}_224", pretrained=True)


def test_lsa_with_additive_ghost_is_lsa_plus_depthwise_conv():
    """``lsa_dwconv`` (lam 0, gamma 1): LSA output + a k x k depthwise conv of v with the ghost kernel."""
    torch.manual_seed(0)
    plain = LocalSelfAttention(16, 2, 5, tile=4)
    dw = LocalSelfAttention(16, 2, 5, tile=4, lam=0., gamma=1.)
    dw.load_state_dict(plain.state_dict() | {"ghost_head": dw.ghost_head.detach()})
    x = torch.randn(2, 6, 7, 16)
    b, h, w, c = x.shape
    v = dw.qkv(x).permute(0, 3, 1, 2)[:, 2 * c:]
    conv = F.conv2d(v, dw.ghost_head[0].reshape(c, 1, 5, 5), padding=2, groups=c)
    expected = plain(x) + dw.proj(conv.permute(0, 2, 3, 1)) - dw.proj.bias
    torch.testing.assert_close(dw(x), expected, atol=1e-5, rtol=1e-5)


def test_aggregation_macs_by_hand():
    blk = ELSABlock(16, 2, kernel_size=3, lam=1., gamma=1., group_width=4)
    assert aggregation_macs(blk, torch.randn(2, 5, 6, 16)) == 2 * (2 * 16 * 5 * 6 * 9)
    blk = ELSABlock(16, 2, kernel_size=3, lam=0., gamma=0., group_width=4)
    assert aggregation_macs(blk, torch.randn(1, 5, 6, 16)) == 16 * 5 * 6 * 9


def test_embedded_volo_rows_differ_only_in_the_mixer():
    cfgs = {m: load_config(reproduce.config_path("default", m), ElsaConfig) for m in ("volo", "elsa_volo")}
    assert (cfgs["volo"].model.mixer, cfgs["elsa_volo"].model.mixer) == ("outlook", "elsa")
    models = {m: build_model(c.model, 10) for m, c in cfgs.items()}
    assert isinstance(models["volo"], VOLO) and isinstance(models["elsa_volo"].network[0][0], ELSABlock)
    swin = load_config(reproduce.config_path("default", "elsa"), ElsaConfig)
    assert (swin.sched, swin.engine.batch_size, swin.engine.epochs) == (cfgs["volo"].sched, 64, 12)
    assert cfgs["volo"].engine.epochs == cfgs["elsa_volo"].engine.epochs == 24  # 552 steps, both VOLO rows
    swin.engine.epochs = 24
    assert swin.engine == cfgs["volo"].engine and swin.optim.name == cfgs["volo"].optim.name == "adamw"
    # lr and stage-0 kernel chosen per row on the validation draws (elsa.tune: grid, then confirmation stage)
    assert (cfgs["volo"].optim.lr, cfgs["elsa_volo"].optim.lr) == (2e-3, 4e-3)
    assert (cfgs["volo"].model.outlook_kernel, cfgs["elsa_volo"].model.elsa_kernel) == (5, 5)
    cfgs["volo"].model.mixer, cfgs["volo"].optim.lr, cfgs["volo"].model.outlook_kernel = "elsa", 4e-3, 3
    assert str(cfgs["volo"]) == str(cfgs["elsa_volo"])


def test_ablation_rows_build_what_their_names_say():
    built = {}
    for row in reproduce.SUITES["ablations"]["rows"]:
        cfg = load_config(reproduce.config_path("ablations", row), ElsaConfig)
        built[row] = build_model(cfg.model, 10).layers[0].blocks[0].attn
    assert isinstance(built["lsa"], LocalSelfAttention) and built["lsa"].ghost_head is None
    assert built["lsa_dwconv"].ghost_head.shape == (1, 32, 5, 5) and built["lsa_dwconv"].lam == 0
    assert built["elsa_no_hadamard"].ghost_head.shape == (2, 1, 32, 5, 5)
    assert type(built["elsa_no_ghost"]).__name__ == "ELSA" and built["elsa_no_ghost"].ghost_head is None
    assert built["elsa"].ghost_head.shape == (2, 1, 32, 5, 5)
    assert reproduce.SUITES["ablations"]["claims"] == [("elsa", "lsa_dwconv")]


def test_claim_needs_a_margin_above_the_pooled_std():
    assert reproduce.claim([10., 12., 14.], [5., 6., 7.])["holds"]
    c = reproduce.claim([8., 14., 20.], [9., 10., 11.])  # +4 against a pooled std of sqrt((36 + 1) / 2)
    assert c["diff"] == pytest.approx(4.0) and c["pooled_std"] == pytest.approx(math.sqrt(18.5), abs=1e-3)
    assert not c["holds"]
    assert not reproduce.claim([5.], [1.])["holds"]  # one seed: no spread, no claim


def test_bad_volo_settings_fail_with_one_line():
    cfg = load_config(reproduce.config_path("default", "volo"), ElsaConfig, ["model.mixer=swin"])
    with pytest.raises(ValueError, match="model.mixer must be one of"):
        build_model(cfg.model, 10)
    cfg = load_config(reproduce.config_path("default", "volo"), ElsaConfig, ["model.embed_dims=[32]"])
    with pytest.raises(ValueError, match="one entry per stage"):
        build_model(cfg.model, 10)


@pytest.mark.parametrize("size,lr,drop_path,params,crop", [
    ("d1", 1.6e-3, 0.1, 26.67, 0.96), ("d2", 1e-3, 0.2, 58.72, 0.96), ("d3", 1e-3, 0.5, 86.38, 0.96),
    ("d4", 1e-3, 0.5, 192.72, 1.15), ("d5", 8e-4, 0.75, 295.10, 1.15)])
def test_imagenet_volo_configs_follow_volos_recipe(size, lr, drop_path, params, crop):
    """D1-D3: the official README's commands; D4/D5: the VOLO paper's model table (lr, drop path, crop
    ratio 1.15 = the official ``volo_large`` default_cfg). All with token labelling, 14 tokens a side."""
    from pathlib import Path

    cfg = load_config(Path(reproduce.HERE) / "configs" / f"elsa_volo-{size}_8xb128-310e_in1k.yaml", ElsaConfig)
    assert (cfg.optim.lr, cfg.model.drop_path_rate, cfg.data.eval_crop_pct) == (lr, drop_path, crop)
    assert (cfg.engine.batch_size, cfg.engine.epochs, cfg.model.img_size) == (1024, 310, 224)
    assert cfg.optim.lr * cfg.sched.warmup_lr_factor == pytest.approx(1e-6)
    assert cfg.optim.lr * cfg.sched.min_lr_factor == pytest.approx(1e-5)
    t = cfg.train
    assert (t.token_label, t.token_label_size, t.dense_weight, t.cls_weight, t.ground_truth, t.mix_token) == (
        True, 14, 0.5, 1.0, False, True)
    assert (cfg.data.mixup, cfg.data.cutmix) == (0.0, 0.0)
    with torch.device("meta"):
        m = build_model(cfg.model, 1000, cfg.train)
    assert isinstance(m, ElsaVOLO) and round(n_params(m) / 1e6, 2) == params and m.token_label_train


@pytest.mark.parametrize("name,size,batch,drop_path", [
    ("d1-384px-ft_8xb64", 384, 512, 0.1), ("d2-384px-ft_8xb48", 384, 384, 0.2), ("d3-448px-ft_8xb30", 448, 240, 0.5),
    ("d4-448px-ft_8xb30", 448, 240, 0.5), ("d5-448px-ft_8xb30", 448, 240, 0.75),
    ("d5-512px-ft_8xb30", 512, 240, 0.75)])
def test_fine_tuning_configs_follow_volos_recipe(name, size, batch, drop_path):
    """VOLO's fine-tuning commands: lr 8e-6 -> 4e-6, wd 1e-8, 30 + 10 epochs, token labelling at img / 16
    tokens a side with the ground-truth blend, the 224 px run's drop path."""
    cfg = load_config(reproduce.HERE / "configs" / f"elsa_volo-{name}-40e_in1k.yaml", ElsaConfig)
    assert (cfg.model.img_size, cfg.engine.batch_size, cfg.engine.epochs, cfg.model.drop_path_rate) == (
        size, batch, 40, drop_path)
    assert (cfg.optim.lr, cfg.optim.weight_decay) == (8e-6, 1e-8)
    assert cfg.optim.lr * cfg.sched.min_lr_factor == pytest.approx(4e-6)
    assert (cfg.train.token_label, cfg.train.token_label_size, cfg.train.ground_truth) == (True, size // 16, True)


def test_every_config_builds_its_model():
    """Every config under elsa/configs (classification, ablations, Mask R-CNN, UperNet) loads and builds
    its model (on the meta device: no memory, no time); the model's input size is the config's."""
    from elsa.detection import DetConfig, elsa_maskrcnn
    from elsa.segmentation import SegConfig, elsa_upernet

    paths = sorted(p for p in (reproduce.HERE / "configs").rglob("*.yaml") if not p.name.startswith("base_"))
    assert len(paths) == 26  # 21 top-level (ELSA-Swin, ELSA-VOLO D1-D5 + 6 fine-tunings, micro, dense) + 5 ablations
    for p in paths:
        with torch.device("meta"):
            if p.name.startswith("maskrcnn_"):
                m = load_config(p, DetConfig).model
                model = elsa_maskrcnn(m.num_classes, m.backbone, "", m.fpn_channels, m.min_size, m.max_size,
                                      drop_path_rate=m.drop_path_rate)
            elif p.name.startswith("upernet_"):
                m = load_config(p, SegConfig).model
                model = elsa_upernet(m.num_classes, m.backbone, "", m.channels, m.aux_channels,
                                     drop_path_rate=m.drop_path_rate)
            else:
                cfg = load_config(p, ElsaConfig, ["model.init_checkpoint="])
                model = build_model(cfg.model, cfg.data.num_classes, cfg.train)
                if cfg.model.family == "volo":
                    assert model.pos_embed.shape[1] * cfg.model.patch_size * 2 == cfg.model.img_size, p.name
        assert n_params(model) > 0, p.name


def test_fine_tuning_init_resamples_the_position_embedding(tmp_path):
    from elsa.volo import load_run_weights

    torch.manual_seed(0)
    small, big = ElsaVOLO(**MICRO), ElsaVOLO(**(MICRO | {"img_size": 64}))
    assert small.pos_embed.shape == (1, 4, 4, 64) and big.pos_embed.shape == (1, 8, 8, 64)
    torch.save({"model": small.state_dict(), "optimizer": {}}, tmp_path / "best.pt")
    load_run_weights(big, tmp_path / "best.pt")
    torch.testing.assert_close(big.network[0][0].attn.ghost_head, small.network[0][0].attn.ghost_head)
    # a constant embedding stays constant under the resampling
    with torch.no_grad():
        small.pos_embed.fill_(0.5)
    torch.save({"model": small.state_dict(), "optimizer": {}}, tmp_path / "best.pt")
    load_run_weights(big, tmp_path / "best.pt")
    torch.testing.assert_close(big.pos_embed, torch.full_like(big.pos_embed, 0.5))
    torch.save({"state_dict": small.state_dict()}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a checkpoint of our engine"):
        load_run_weights(big, tmp_path / "other.pth")
    cfg = load_config(reproduce.HERE / "configs" / "elsa_volo-d1-384px-ft_8xb64-40e_in1k.yaml", ElsaConfig)
    assert (cfg.model.img_size, cfg.engine.batch_size, cfg.engine.epochs, cfg.optim.lr) == (384, 512, 40, 8e-6)
    assert cfg.optim.lr * cfg.sched.min_lr_factor == pytest.approx(4e-6)
