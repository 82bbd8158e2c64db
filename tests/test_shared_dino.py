"""shared.dino: DINO head / multi-crop wrapper / teacher EMA / loss / schedules / augmentation (spec dino.md)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from shared.dino import DINOHead, DINOLoss, DINOModel, MultiCropWrapper, cosine_schedule
from transreid_ssl.model import ReIDViT


def tiny_vit():
    return ReIDViT((32, 16), 8, 32, 2, 2, 2.0, 0.0, stem="patchify")


def test_dino_head_layout_and_multicrop_equivalence():
    torch.manual_seed(0)
    head = DINOHead(32, 50, 16, 8)
    keys = set(head.state_dict())
    assert {"mlp.0.weight", "mlp.2.weight", "mlp.4.weight", "last_layer.weight_g", "last_layer.weight_v"} <= keys
    assert not head.last_layer.weight_g.requires_grad
    vit = tiny_vit().eval()
    wrap = MultiCropWrapper(vit, head)
    crops = [torch.randn(2, 3, 32, 16), torch.randn(2, 3, 32, 16), torch.randn(2, 3, 16, 8)]
    ref = head(torch.cat([vit(c) for c in crops]))
    assert torch.allclose(wrap(crops), ref, atol=1e-5)


def test_dino_model_teacher_starts_as_student_and_follows_by_ema():
    torch.manual_seed(0)
    mk = lambda: MultiCropWrapper(tiny_vit(), DINOHead(32, 20, 16, 8))  # noqa: E731
    m = DINOModel(mk(), mk())
    for ps, pt in zip(m.student.parameters(), m.teacher.parameters()):
        assert torch.equal(ps, pt) and not pt.requires_grad
    with torch.no_grad():
        for p in m.student.parameters():
            p.add_(1.0)
    t0 = [p.clone() for p in m.teacher.parameters()]
    m.update_teacher(0.9)
    for a, b, s in zip(m.teacher.parameters(), t0, m.student.parameters()):
        assert torch.allclose(a, 0.9 * b + 0.1 * s)


def test_dino_loss_hand_computed_and_center():
    torch.manual_seed(0)
    b, k, n_crops = 3, 5, 3
    s, t = torch.randn(n_crops * b, k), torch.randn(2 * b, k)
    loss_fn = DINOLoss(k, n_crops, 0.04, 0.04, 0, 10, 0.1, 0.9)
    loss_fn.center.fill_(0.2)
    got = loss_fn(s, t, epoch=0)
    p = [F.softmax((t[i * b:(i + 1) * b] - 0.2) / 0.04, -1) for i in range(2)]
    q = [F.log_softmax(s[v * b:(v + 1) * b] / 0.1, -1) for v in range(n_crops)]
    pairs = [(i, v) for i in range(2) for v in range(n_crops) if v != i]
    assert len(pairs) == 2 * n_crops - 2
    ref = sum(-(p[i] * q[v]).sum(-1).mean() for i, v in pairs) / len(pairs)
    assert torch.allclose(got, ref, atol=1e-6)
    assert torch.allclose(loss_fn.center, 0.9 * 0.2 + 0.1 * t.mean(0, keepdim=True), atol=1e-6)


def test_teacher_temperature_schedule():
    f = DINOLoss(4, 2, 0.04, 0.07, 3, 10)
    assert np.allclose(f.teacher_temp_schedule[:4], [0.04, 0.055, 0.07, 0.07]) and len(f.teacher_temp_schedule) == 10


def test_dino_cosine_schedule_is_a_warmup_prefix():
    s = cosine_schedule(1.0, 0.0, epochs=4, niter_per_ep=5, warmup_epochs=1)
    assert len(s) == 20 and s[0] == 0.0 and s[4] == 1.0 and s[5] == 1.0  # cosine restarts after the prefix
    assert s[-1] > 0 and s[-1] < 0.05
    m = cosine_schedule(0.996, 1.0, 2, 3)
    assert m[0] == pytest.approx(0.996) and m[-1] < 1.0 and np.all(np.diff(m) > 0)


def test_dino_head_use_bn_layout_is_the_official_one():
    head = DINOHead(32, 50, 16, 8, use_bn=True)
    kinds = [type(m).__name__ for m in head.mlp]
    assert kinds == ["Linear", "BatchNorm1d", "GELU", "Linear", "BatchNorm1d", "GELU", "Linear"]
    keys = set(head.state_dict())
    assert {"mlp.0.weight", "mlp.1.running_mean", "mlp.3.weight", "mlp.4.weight", "mlp.6.weight"} <= keys
    assert DINOHead(32, 50, 16, 8, nlayers=1).mlp[0].out_features == 8


def _crops_of(aug, img, seed):
    import random

    random.seed(seed)
    torch.manual_seed(seed)
    return aug(img)


def test_multicrop_from_config_defaults_are_the_official_augmentation_and_switches_turn_colour_off():
    from PIL import Image

    from shared.dino import DINOConfig, DINOMultiCrop

    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 32, 3), dtype=np.uint8))
    g = DINOConfig(n_local=2, local_size=[32, 16], blur_radius_max=1.0)
    official = DINOMultiCrop((64, 32), (32, 16), 2, blur_radius_max=1.0)
    for seed in range(3):
        for a, b in zip(_crops_of(DINOMultiCrop.from_config(g, [64, 32]), img, seed), _crops_of(official, img, seed)):
            assert torch.equal(a, b)
    # a flat red image keeps its exact colour under every crop when jitter, grayscale and solarize are off
    red = Image.new("RGB", (32, 64), (200, 30, 30))
    off = DINOConfig(n_local=2, local_size=[32, 16], blur_radius_max=1.0, color_jitter_p=0.0, grayscale_p=0.0,
                     solarize_p=0.0)
    seen_on, official_cfg = set(), DINOConfig(n_local=2, local_size=[32, 16])
    for seed in range(20):
        for c in _crops_of(DINOMultiCrop.from_config(off, [64, 32]), red, seed):
            assert torch.allclose(c, c[:, :1, :1].expand_as(c)) and torch.allclose(c[:, 0, 0], _crops_of(
                DINOMultiCrop.from_config(off, [64, 32]), red, 0)[0][:, 0, 0])
        seen_on |= {tuple(c[:, 0, 0].round(decimals=3).tolist()) for c in
                    _crops_of(DINOMultiCrop.from_config(official_cfg, [64, 32]), red, seed)}
    assert len(seen_on) > 5  # with the official probabilities the colour does change


def test_random_channel_gain_is_a_per_channel_cast_and_off_by_default():
    import math
    import random

    from PIL import Image

    from shared.dino import RandomChannelGain

    img = Image.new("RGB", (4, 4), (200, 100, 50))
    state = random.getstate()
    assert RandomChannelGain(0.0, 1.6)(img) is img and random.getstate() == state  # off: identity, no draw
    random.seed(3)
    gains = [random.uniform(0.6, 1.4) for _ in range(3)]
    gamma = math.exp(random.uniform(-math.log(1.6), math.log(1.6)))
    want = [round(min(c / 255 * g, 1.0) ** gamma * 255) for c, g in zip((200, 100, 50), gains)]
    random.seed(3)
    out = np.asarray(RandomChannelGain(0.4, 1.6)(img))
    assert (out == np.array(want, dtype=np.uint8)).all()
