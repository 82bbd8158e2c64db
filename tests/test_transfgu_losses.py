"""TransFGU losses (BootstrappingLoss / CLSEmbLoss semantics), augmentation crop and bootstrapping schedule."""
import torch
import torch.nn.functional as F

from transfgu.losses import alpha_for, bootstrap_loss, class_embedding_loss, normalise_cam, pseudo_target, transfgu_loss
from transfgu.pipeline import augment, bootstrap_refresh


def test_normalise_cam_per_image_over_all_channels_and_constant_guard():
    cam = torch.tensor([[[[1.0, 3.0]], [[5.0, 2.0]]], [[[7.0, 7.0]], [[7.0, 7.0]]]])  # (2, 2, 1, 2)
    p = normalise_cam(cam)
    assert torch.allclose(p[0], torch.tensor([[[0.0, 0.5]], [[1.0, 0.25]]]))
    assert torch.isfinite(p[1]).all()  # the official code gives NaN here


def test_background_channel_wins_only_below_005():
    cam = torch.tensor([[[[0.0, 0.04, 0.06, 1.0]]]])  # one class, 4 pixels: normalised = same values
    p, fg = pseudo_target(cam, things_only=True)
    assert p.shape == (1, 2, 1, 4)
    assert p.argmax(1).tolist() == [[[0, 0, 1, 1]]]  # bg = relu(.1 - P): wins where P < .05
    assert fg.tolist() == [[[False, False, False, True]]]  # uncertainty area: some P_c > .1


def test_teacher_mix_and_negative_term():
    cam = torch.rand(2, 3, 4, 4)
    teacher = torch.randn(2, 3, 4, 4)
    p, _ = pseudo_target(cam, teacher, things_only=False)
    assert torch.allclose(p, 0.5 * teacher.softmax(1) + 0.5 * normalise_cam(cam))
    logits = torch.randn(2, 3, 4, 4)
    g = torch.Generator().manual_seed(0)
    l_cat, _, y = bootstrap_loss(logits, p, torch.ones(2, 4, 4, dtype=torch.bool), 0.05, False, g)
    perm = torch.randperm(3, generator=torch.Generator().manual_seed(0))
    want = F.cross_entropy(logits, y, reduction="none") - 0.05 * F.cross_entropy(
        logits, p[:, perm].argmax(1), reduction="none")
    assert torch.allclose(l_cat, want)
    assert [alpha_for(k) for k in (0, 3, 7, 20)] == [0.03, 0.06, 0.10, 0.10]


def test_uncertainty_is_one_minus_top2_margin():
    logits = torch.log(torch.tensor([0.6, 0.3, 0.1])).view(1, 3, 1, 1)
    _, l_unc, _ = bootstrap_loss(logits, torch.rand(1, 3, 1, 1), torch.ones(1, 1, 1, dtype=torch.bool), None, False)
    assert torch.allclose(l_unc, torch.tensor(1 - 0.3).view(1, 1, 1), atol=1e-6)
    # things-only: the softmax covers the fg channels 1.. only: (0.3, 0.1) -> (.75, .25)
    _, l_unc, _ = bootstrap_loss(logits, torch.rand(1, 3, 1, 1), torch.ones(1, 1, 1, dtype=torch.bool), None, True)
    assert torch.allclose(l_unc, torch.tensor(0.5), atol=1e-6)


def test_class_embedding_loss_pairs():
    e = F.normalize(torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]]), dim=-1)
    assert torch.allclose(class_embedding_loss(e), torch.tensor([[1.0, 0.0, 1.0]]))  # cos 0, -1, 0


def test_total_loss_backward():
    logits = torch.randn(2, 4, 3, 3, requires_grad=True)
    emb = F.normalize(torch.randn(2, 4, 8, requires_grad=True), dim=-1)
    out = transfgu_loss(logits, emb, torch.rand(2, 3, 3, 3), things_only=True)
    out["loss"].backward()
    assert torch.isfinite(logits.grad).all() and set(out) == {"loss", "cat", "unc", "div"}


def test_augment_crop_matches_roi_align_average_on_integer_boxes():
    imgs = torch.randn(4, 3, 32, 32)
    cams = torch.arange(4 * 2 * 4 * 4, dtype=torch.float32).view(4, 2, 4, 4)
    x, y = augment(imgs, cams, 8, torch.Generator().manual_seed(0), out=16)
    assert x.shape == (4, 3, 16, 16) and y.shape == (4, 2, 2, 2)
    # a full-image box on the 4x4 CAM grid pooled to 2x2 is a 2x2 average pool
    from torchvision.ops import roi_align
    box = torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0]])
    pooled = roi_align(cams[:1], box, 2, spatial_scale=1.0, sampling_ratio=0, aligned=True)
    assert torch.allclose(pooled, F.avg_pool2d(cams[:1], 2))


def test_bootstrapping_schedule_coco():
    # COCO: start 3, intervals (3, 3, 3, 2): refresh at 3, 6, 9, 12, 15, 18, then every 3 until 30, then 2
    on = [e for e in range(40) if bootstrap_refresh(e, 3, [3, 3, 3, 2])]
    assert on[:6] == [3, 6, 9, 12, 15, 18] and 30 in on and 32 in on and 31 not in on
