"""MotionRGBD: math of FRP, RCM, kNN attention, DTN sampler/temperature, losses, CAPF, official key layout."""
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from motion_rgbd.data import frp_maps, rank_pool_weights, sample_frames, to_grey
from motion_rgbd.losses import ce_ls, distillation_kl
from motion_rgbd.model import (
    CrossFusionNet,
    FRPModule,
    MotionNet,
    RCMModule,
    knn_mask,
    load_official_checkpoint,
    same_pad,
    segment_indices,
    temperature_schedule,
    unimodal_to_fusion,
)
from motion_rgbd.train import MINI_NET, net_kwargs

KW = net_kwargs(MINI_NET, 15)


def test_rank_pool_static_zero_moving_nonzero():
    assert rank_pool_weights(10).sum() == 0
    static = np.repeat(np.random.default_rng(0).random((1, 16, 16, 3)), 8, 0).astype(np.float32)
    assert np.abs(frp_maps(static, 4)).max() == 0
    moving = np.zeros((8, 16, 16, 3), np.float32)
    for t in range(8):
        moving[t, 6:10, t:t + 4] = 1.0
    g = frp_maps(moving, 4)
    assert np.all(g[:3] == 0) and g[5].max() > 0  # w-1 zero maps prepended
    assert g[5][:, 12:].max() == 0  # nothing far from the disk


def test_frp_grey_uses_torchvision_luma_weights():
    """The official loader converts the min-maxed rank-pooled map with torchvision's grayscale weights
    (0.2989, 0.587, 0.114), not a channel mean: a pure-red mover gives 0.2989 of a white one."""
    assert np.allclose(to_grey(np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]], np.float32)),
                       [[0.2989, 0.587, 0.114]], atol=1e-6)
    frames = np.zeros((4, 8, 8, 3), np.float32)
    for t in range(4):
        frames[t, :, 2 * t:2 * t + 2, 0] = 1.0  # red bar moving right; other channels stay 0
    d = np.maximum(np.tensordot(rank_pool_weights(4), frames, axes=(0, 0)), 0)
    d = (d - d.min()) / (d.max() - d.min())
    grey = 0.2989 * d[..., 0] + 0.587 * d[..., 1] + 0.114 * d[..., 2]
    mask = np.where(grey > grey.mean(), grey, 0).astype(np.float32)
    import cv2
    mask = cv2.dilate(cv2.erode(mask, np.ones((2, 2), np.uint8)), np.ones((3, 3), np.uint8))
    sm = (mask - mask.min()) / (mask.max() - mask.min())
    np.testing.assert_allclose(frp_maps(frames, 4)[3], (grey + sm) * sm, atol=1e-6)


def test_knn_mask_keeps_floor_ratio():
    dots = torch.randn(2, 3, 11, 11)
    kept = torch.isfinite(knn_mask(dots, 0.7)).sum(-1)
    assert torch.all(kept == int(0.7 * 11))


def test_temperature_schedule():
    s = temperature_schedule(100)
    assert s[0] == pytest.approx(0.04) and s[29] == pytest.approx(0.07) and np.all(s[30:] == 0.07) and len(s) == 100


def test_ce_ls_hand_computed():
    z, y = torch.randn(5, 7), torch.randint(0, 7, (5,))
    logp = F.log_softmax(z, -1)
    ref = 0.9 * F.nll_loss(logp, y) + 0.1 * (-logp.mean(-1)).mean()
    assert torch.allclose(ce_ls(z, y), ref)
    assert torch.allclose(ce_ls(z, y), F.cross_entropy(z, y, label_smoothing=0.1), atol=1e-6)


def test_distillation_kl_sum_and_teacher_detached():
    s, t = torch.randn(4, 8, requires_grad=True), torch.randn(4, 8, requires_grad=True)
    kl = distillation_kl(s, t, 0.5)
    p, q = F.softmax(t / 0.5, -1), F.log_softmax(s / 0.5, -1)
    assert torch.allclose(kl, (p * (p.log() - q)).sum())
    kl.backward()
    assert t.grad is None and s.grad is not None


def test_segment_sampler_sorted_in_range():
    for n, s in [(64, 16), (64, 48), (10, 16), (16, 12)]:
        idx = segment_indices(n, s, random.Random(0))
        assert len(idx) == s and idx == sorted(idx) and 0 <= min(idx) and max(idx) < n
        assert segment_indices(n, s) == segment_indices(n, s)  # eval: middle frames, deterministic
    for n in (5, 64, 200):
        idx = sample_frames(n, 64, True, np.random.default_rng(0))
        assert idx == sorted(idx) and max(idx) < n and len(idx) == 64


def test_same_pad_matches_tf():
    assert same_pad((64, 224, 224), (1, 7, 7), (1, 2, 2)) == [2, 3, 2, 3, 0, 0]
    assert same_pad((5,), (3,), (1,)) == [1, 1]


def test_frp_module_identity_init_and_gradient():
    m = FRPModule()
    x, g = torch.randn(2, 4, 3, 4, 4), torch.rand(2, 1, 3, 16, 16)
    assert torch.allclose(m(x, g), 2 * x)  # w = (1, 0): x + x
    with torch.no_grad():
        m.rpconv1d.weight.copy_(torch.tensor([0.0, 1.0]).view(1, 2, 1))
    gp = F.max_pool3d(F.max_pool3d(g, (1, 2, 2)), (1, 2, 2))
    assert torch.allclose(m(x, g), x + x * (1 + gp))


def test_rcm_shapes_and_weights():
    rcm = RCMModule(frames=16, dim=32, hidden=8)
    x = torch.randn(3, 32, 16)
    y, s, w = rcm(x)
    assert y.shape == x.shape and s.shape == (3, 32) and w.shape == (3, 32, 16)
    u = torch.sigmoid(rcm.project(x.mean(1)))
    v = torch.sigmoid((rcm.q(x) @ rcm.k(x).transpose(1, 2) / 8).mean(1))
    assert torch.allclose(w, v[:, :, None] * u[:, None, :], atol=1e-6)
    assert torch.allclose(y, x * w)


def test_motionnet_forward_backward_and_eval_repeats():
    torch.manual_seed(0)
    m = MotionNet(6, **KW)
    x, g, y = torch.randn(2, 3, 16, 32, 32), torch.rand(2, 1, 16, 32, 32), torch.tensor([1, 2])
    (z, zs, zm, zl), kl, h = m(x, g)
    assert z.shape == (2, 6) and torch.allclose(z, torch.stack([zs, zm, zl], -1).amax(-1))
    (ce_ls(z, y) + kl).backward()
    assert m.Conv3d_1a_7x7.conv3d.weight.grad is not None and m.dtn.rcm.linear.weight.grad is not None
    m.eval()
    with torch.no_grad():
        assert torch.equal(m(x, g)[0][0], m(x, g)[0][0])


def test_capf_losses_and_official_view():
    torch.manual_seed(0)
    f = CrossFusionNet(6, **KW)
    x, g, y = torch.randn(2, 3, 16, 32, 32), torch.rand(2, 1, 16, 32, 32), torch.tensor([0, 5])
    (yy, r, d), losses = f(x, x, g, g, y)
    assert yy.shape == r.shape == d.shape == (2, 6)
    assert set(losses) == {"loss", "ce", "bce", "mse", "kl"}
    losses["loss"].backward()
    assert f.fusion_model.efc.weight.grad is not None and f.fc.weight.grad is not None
    f.eval()
    dim = KW["dim"]
    fm, fk = torch.randn(2, 16, dim), torch.randn(2, 16, dim)
    a = f.spatial_fusion(fm, fk)
    f.official_view = False
    b = f.spatial_fusion(fm, fk)
    assert a.shape == b.shape == fm.shape and not torch.allclose(a, b)  # the official .view is not a permute


def official_unimodal_state(model: MotionNet) -> dict:
    """A state dict in the official checkpoint layout: {'model': {'module.' + key: tensor}}."""
    return {"model": {"module." + k: torch.randn_like(v) if v.is_floating_point() else v
                      for k, v in model.state_dict().items()}, "epoch": 3, "bestacc": 0.5}


def test_official_key_layout_full_size():
    m = MotionNet(60, frames=64, rcm_hidden=256)
    sd = m.state_dict()
    assert sd["Conv3d_1a_7x7.conv3d.weight"].shape == (64, 3, 1, 7, 7)
    assert sd["frp_module.rpconv1d.weight"].shape == (1, 2, 1)
    assert sd["dtn.pos_embedding_small"].shape == (1, 17, 512) and sd["dtn.pos_embedding_large"].shape == (1, 49, 512)
    pre = "dtn.multi_scale_transformers.0.transformer_enc_small.layers.0."
    assert sd[pre + "0.fn.to_qkv.weight"].shape == (1536, 512) and pre + "1.fn.fc1.weight" in sd
    assert "dtn.multi_scale_transformers.0.Mixed_small.b1b.conv3d.weight" in sd
    assert not any("multi_scale_transformers.1.Mixed" in k for k in sd)  # after the Oct-2022 DTN fix
    assert sd["Mixed_5c.b3b.conv3d.weight"].shape[0] == 128 and sd["LinearMap.1.weight"].shape == (512, 1024)
    for k in ("dtn.rcm.q.weight", "dtn.rcm.project.0.weight", "dtn.rcm.project.3.weight", "dtn.rcm.linear.weight",
              "dtn.mlp_head_media.1.weight"):
        assert k in sd


def test_load_official_checkpoint_and_fusion_init():
    torch.manual_seed(0)
    src, dst = MotionNet(6, **KW), MotionNet(6, **KW)
    ck = official_unimodal_state(src)
    assert load_official_checkpoint(dst, ck) == []
    for k, v in dst.state_dict().items():
        assert torch.equal(v, ck["model"]["module." + k])
    fusion = CrossFusionNet(6, **KW)
    missing = load_official_checkpoint(fusion, unimodal_to_fusion(ck, official_unimodal_state(src)),
                                       required_prefix="Modalit_")
    assert all(not k.startswith("Modalit_") for k in missing)
    from shared.backbones import CheckpointMismatchError
    with pytest.raises(CheckpointMismatchError, match="missing"):  # a fusion file is no unimodal init
        load_official_checkpoint(MotionNet(6, **KW), {"model": fusion.state_dict()})
    assert load_official_checkpoint(MotionNet(6, **KW), {"model": {}}, required_prefix=None)  # official: lenient
    assert torch.equal(fusion.Modalit_rgb.Mixed_3b.b0.conv3d.weight, ck["model"]["module.Mixed_3b.b0.conv3d.weight"])
    fsd = fusion.state_dict()
    for k in ("crossFusion.0.weight", "crossFusion.1.weight", "crossFusion.3.weight", "crossFusionT.3.weight",
              "fusion_model.encoder.enconv.9.weight", "fusion_model.decoder.deconv.3.weight",
              "fusion_model.efc.weight", "fc.weight", "classifier1.1.weight", "classifier2.0.weight"):
        assert k in fsd


def test_init_and_fusion_checkpoints_fail_in_one_line_naming_the_file(tmp_path):
    """model.init_checkpoint, model.rgb/depth_checkpoint and evaluate --checkpoint go through read_checkpoint: a
    missing or corrupt file is a user error naming it (a corrupt one was 'UnpicklingError ... unexpected')."""
    from motion_rgbd.model import read_checkpoint
    from motion_rgbd.train import MotionConfig, MotionTask
    from shared.config import load_config
    from shared.errors import CheckpointError, format_error

    bad = tmp_path / "bad.pth.tar"
    bad.write_bytes(b"not a torch file")
    for path, text in ((tmp_path / "missing.pth.tar", "missing.pth.tar: checkpoint not found"),
                       (bad, "bad.pth.tar: not a readable torch checkpoint")):
        with pytest.raises(CheckpointError, match=text) as e:
            load_official_checkpoint(MotionNet(6, **KW), str(path))
        line = format_error("python -m motion_rgbd.train", e.value)
        assert "unexpected" not in line and "\n" not in line
    cfg = load_config("motion_rgbd/configs/capf_i3d-dsn_8xb4-100e_nvgesture.yaml", MotionConfig,
                      [f"model.rgb_checkpoint={bad}", f"model.depth_checkpoint={bad}", "engine.device=cpu"])
    with pytest.raises(CheckpointError, match="bad.pth.tar: not a readable"):
        MotionTask(cfg).build_model()
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="list.pt: expected a dict"):
        read_checkpoint(tmp_path / "list.pt")
