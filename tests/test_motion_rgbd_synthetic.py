"""Embedded SynRGBD: each class pair lives in the modality it is meant to, decoy faults, the motion sub-window,
the scaled NvGesture augmentation against the official cv2 geometry, the coupled-trunk switch."""
import numpy as np
import pytest
import torch

from motion_rgbd.data import rotate, train_geometry
from motion_rgbd.model import MotionNet
from motion_rgbd.synthetic import PAD, SynAugment, SynConfig, make_synthetic, motion_progress, render_clip

CLEAN = SynConfig(depth_fault=0.0)


def _pair(a, b, seed=5, **kw):
    """Two classes rendered in the same scene (same random draws): (rgb_a, dep_a), (rgb_b, dep_b)."""
    return (render_clip(a, np.random.default_rng(seed), CLEAN, **kw),
            render_clip(b, np.random.default_rng(seed), CLEAN))


@pytest.mark.parametrize("a,b,rgb_same,depth_same", [(2, 3, True, False),   # approach/recede: depth only
                                                     (4, 5, False, True),   # colour drifts: RGB only
                                                     (0, 1, False, False)])  # expand/contract: both
def test_each_pair_is_separable_only_in_its_modality(a, b, rgb_same, depth_same):
    (ra, da), (rb, db) = _pair(a, b)
    assert np.array_equal(ra, rb) == rgb_same
    assert np.array_equal(da, db) == depth_same
    if not rgb_same:
        assert np.abs(ra - rb).max() > 0.2
    if not depth_same:
        assert np.abs(da - db).max() > 0.2


def test_depth_only_and_rgb_only_pairs_look_static_in_the_other_modality():
    # in RGB, approach looks exactly like a colour drift's depth twin does in depth: a disk that never moves
    rgb2, dep2 = render_clip(2, np.random.default_rng(1), SynConfig(depth_fault=0.0, rgb_noise=0.0, depth_noise=0.0))
    assert np.array_equal(rgb2[0], rgb2[-1])  # RGB static
    assert dep2[0].min() > 0.65 and dep2[-1].min() < 0.35  # depth: 0.7 -> 0.3
    rgb4, dep4 = render_clip(4, np.random.default_rng(1), SynConfig(depth_fault=0.0, rgb_noise=0.0, depth_noise=0.0))
    assert np.array_equal(dep4[0], dep4[-1])  # depth static
    disk = np.abs(dep4[0] - 0.5) < 1e-6
    r_minus_b = [(f[..., 0] - f[..., 2])[disk].mean() for f in rgb4]
    assert r_minus_b[0] > r_minus_b[-1] + 0.5 and np.all(np.diff(r_minus_b) < 0)  # warm -> cool, monotone


def test_a_depth_fault_shows_the_decoys_depth_in_the_true_scene():
    rng = lambda: np.random.default_rng(7)  # noqa: E731
    rgb_f, dep_f = render_clip(2, rng(), CLEAN, depth_label=0)
    rgb_2, _ = render_clip(2, rng(), CLEAN)
    _, dep_0 = render_clip(0, rng(), CLEAN)
    assert np.array_equal(rgb_f, rgb_2) and np.array_equal(dep_f, dep_0)
    rgb_f, dep_f = render_clip(4, rng(), CLEAN, rgb_label=1)
    assert np.array_equal(rgb_f, render_clip(1, rng(), CLEAN)[0])
    assert np.array_equal(dep_f, render_clip(4, rng(), CLEAN)[1])


def test_fault_rates_and_decoys():
    d = make_synthetic(20, 0, SynConfig(depth_fault=0.5, frames=8, size=24))
    frac = float((d.fault == 2).float().mean())
    assert 0.3 < frac < 0.7 and not (d.fault == 1).any()
    assert not make_synthetic(5, 0, SynConfig(depth_fault=0.0, frames=8, size=24)).fault.any()
    assert d.rgb.shape == (120, 3, 8, 24, 24) and d.g_depth.shape == (120, 1, 8, 24, 24)


def test_motion_progress_sub_window():
    assert np.allclose(motion_progress(16, 0, np.random.default_rng(0)), np.linspace(0, 1, 16))
    for seed in range(20):
        a = motion_progress(16, 6, np.random.default_rng(seed))
        moving = np.flatnonzero((a > 0) & (a < 1))
        assert len(moving) == 4 and np.all(np.diff(moving) == 1)  # 6 frames from 0 to 1: 4 strictly inside
        assert a[0] == 0.0 and a[-1] == 1.0 and np.all(np.diff(a) >= 0)


def test_sub_window_clip_is_static_outside_the_window():
    cfg = SynConfig(depth_fault=0.0, motion_frames=6, rgb_noise=0.0, depth_noise=0.0)
    for seed in range(5):
        _, dep = render_clip(0, np.random.default_rng(seed), cfg)
        changed = [i for i in range(15) if not np.array_equal(dep[i], dep[i + 1])]
        assert len(changed) >= 3 and changed[-1] - changed[0] <= 4  # 6 moving frames: at most 5 changes in a row;
        # the other 10 frames repeat the start or end pose


def test_augment_without_rotation_is_the_official_resize_and_crop():
    im = np.random.default_rng(0).uniform(0, 1, (32, 32, 3)).astype(np.float32)
    aug = SynAugment(resize=36)
    x = torch.from_numpy(im).permute(2, 0, 1)[:, None, None]  # (3, 1, 1, 32, 32): three "clips"
    x = x.permute(1, 0, 2, 3, 4).expand(1, 3, 2, 32, 32)  # (B=1, C=3, T=2, S, S)
    g = torch.zeros(1, 1, 2, 32, 32)
    out, _ = aug.apply(x + PAD, g, (torch.tensor([0]), torch.tensor([2]), torch.tensor([3]), torch.tensor([False])))
    ref = train_geometry(im, 32, {"angle": 0, "offset": (2, 3), "flip": False}, (36, 36), 32)
    assert np.abs(out[0, :, 0].permute(1, 2, 0).numpy() - PAD - ref).max() < 1e-4


def test_augment_rotation_turns_the_same_way_as_cv2():
    im = np.zeros((32, 32, 3), np.float32)
    im[4:10, 14:18] = 1.0  # a bar above the centre
    aug = SynAugment(resize=32)
    x = torch.from_numpy(im).permute(2, 0, 1)[:, None].unsqueeze(0)  # (1, 3, 1, 32, 32)
    out, _ = aug.apply(x, torch.zeros(1, 1, 1, 32, 32), (torch.tensor([90]), torch.tensor([0]), torch.tensor([0]),
                                                         torch.tensor([False])))
    ours, ref = out[0, 0, 0].numpy(), rotate(im, 90)[..., 0]
    assert np.abs(ours - ref).mean() < 0.02 and ours[:, :12].sum() > 10  # cv2 +90: the bar ends up on the left


def test_augment_draws_no_flip_and_recipe_angles():
    aug = SynAugment()
    angle, left, top, flip = aug.draw(4000, torch.Generator().manual_seed(0))
    assert not flip.any() and angle.min() >= -10 and angle.max() <= 9
    assert 0.4 < float((angle != 0).float().mean()) < 0.56  # rotate_p 0.5 (minus the draws of angle 0)
    assert left.min() == 1 and left.max() == 4 and top.min() == 1 and top.max() == 4


def test_coupled_trunk_mixes_frames_and_the_decoupled_does_not():
    kw = dict(frames=4, width_div=16, dim=16, samples=(2, 2, 4), depth=1, heads=2, dim_head=8, mlp_dim=16,
              rcm_hidden=8, bn_momentum=0.1, frp=False)
    x = torch.randn(1, 3, 4, 32, 32)
    x2 = x.clone()
    x2[:, :, 0] += 1.0  # change frame 0 only
    for coupled, leaks in ((False, False), (True, True)):
        torch.manual_seed(0)
        net = MotionNet(6, coupled=coupled, **kw).eval()
        for mod in net.modules():  # the inception pool branches are 3x3x3 in both (official): switch them off
            if hasattr(mod, "b3b"):
                torch.nn.init.zeros_(mod.b3b.conv3d.weight)
                mod.b3b.bn.bias.data.zero_()
        f, f2 = net(x, endpoint="spatial"), net(x2, endpoint="spatial")
        assert torch.allclose(f[:, 2:], f2[:, 2:], atol=1e-6) != leaks  # frames 2, 3 see frame 0 only if coupled
        assert net.Conv3d_2c_3x3.conv3d.weight.shape[2] == (3 if coupled else 1)


def test_embedded_config_loads_and_its_net_is_the_tests_miniature():
    from motion_rgbd.reproduce import CONFIG, EmbeddedConfig
    from motion_rgbd.train import MINI_NET, NET_KEYS
    from shared.config import load_config, to_dict

    cfg = load_config(CONFIG, EmbeddedConfig)
    model = to_dict(cfg.model)
    assert {k: model[k] for k in NET_KEYS} == MINI_NET
    assert cfg.augment.flip == 0.0 and cfg.decoupling.n_train == 15 and cfg.decoupling.data.motion_frames > 0


def _digest(d) -> str:
    import hashlib
    h = hashlib.sha256()
    for t in (d.rgb, d.depth, d.g_rgb, d.g_depth, d.y, d.fault):
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def test_default_radius_switches_leave_the_draw_bit_identical():
    # digests of make_synthetic(2, 1234, ...) taken with the generator before r_lo / r_change existed
    assert SynConfig().r_lo == [3.5, 5.0] and SynConfig().r_change == [3.0, 4.0]
    assert _digest(make_synthetic(2, 1234, SynConfig())) == \
        "7b7f64dc7d804a886a91db1af316d056dcd8a122103a748f796ef6508bf9a8f7"
    assert _digest(make_synthetic(2, 1234, SynConfig(depth_fault=0.0, motion_frames=6))) == \
        "68b602f522b1cf76587aebdbba73a819eb9ae6cab50e5786e73b88ba225a6fa1"


@pytest.mark.parametrize("r_lo,r_change", [([3.5, 5.0], [3.0, 4.0]), ([2.0, 2.0], [8.0, 8.0])])
def test_radius_switches_set_the_expand_and_contract_radii(r_lo, r_change):
    cfg = SynConfig(depth_fault=0.0, rgb_noise=0.0, depth_noise=0.0, r_lo=r_lo, r_change=r_change)
    yy, xx = np.mgrid[:32, :32]
    for seed in range(4):
        area = {}
        for label in (0, 1):
            _, dep = render_clip(label, np.random.default_rng(seed), cfg)
            area[label] = [int((dep[i] == np.float32(0.5)).sum()) for i in (0, -1)]
        assert area[0] == area[1][::-1]  # contract = expand played backwards, same scene
        small, large = area[0]
        # the disk's pixel count lies between the lattice counts of the smallest and largest radius drawn
        count = lambda r: int(((xx - 16) ** 2 + (yy - 16) ** 2 <= r ** 2).sum())  # noqa: E731
        assert count(r_lo[0]) - 6 <= small <= count(r_lo[1]) + 6
        assert large >= min(count(r_lo[0] + r_change[0]) - 6, 0.6 * count(r_lo[0] + r_change[0]))  # edge clipping
        assert large > 2 * small


def test_only_the_decoupling_suite_sets_the_radius_switches():
    from motion_rgbd.reproduce import CONFIG, EmbeddedConfig
    from shared.config import load_config

    cfg = load_config(CONFIG, EmbeddedConfig)
    assert cfg.default.data.r_lo == SynConfig().r_lo and cfg.default.data.r_change == SynConfig().r_change
    assert cfg.default.data.bg_texture == SynConfig().bg_texture
    assert (cfg.decoupling.data.r_lo, cfg.decoupling.data.r_change, cfg.decoupling.data.bg_texture) == (
        [2.0, 3.0], [7.0, 8.0], 0.05)  # the setting chosen by the README's learnability rule
    assert _digest(make_synthetic(1, 7, cfg.default.data)) == _digest(make_synthetic(
        1, 7, SynConfig(depth_fault=cfg.default.data.depth_fault, motion_frames=cfg.default.data.motion_frames)))


def test_bg_texture_sets_the_background_texture_amplitude():
    yy, xx = np.mgrid[:32, :32]
    spread = {}
    for amp in (0.0, 0.05, 0.15):
        cfg = SynConfig(depth_fault=0.0, rgb_noise=0.0, depth_noise=0.0, bg_texture=amp)
        rgb, dep = render_clip(2, np.random.default_rng(3), cfg)
        bg = dep[0] == np.float32(0.9)  # neither the disk nor the blob
        spread[amp] = float(rgb[0][bg].std(0).mean())
    assert spread[0.0] < 1e-5 and 1e-3 < spread[0.05] < spread[0.15]
