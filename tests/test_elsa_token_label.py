"""Token labelling (VOLO / TokenLabeling official recipe, ``elsa.token_label``): the label-map file format
on a fixture written exactly as ``tlt``'s ``generate_label.py`` writes it, the crop-aligned targets and the
loss on hand-computed values, MixToken's consistency, the label-aware augmentation, and one training step."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from elsa.token_label import (
    LABEL_OPS,
    TokenLabelLoss,
    dense_label_maps,
    label_map_path,
    load_label_map,
    mix_token_box,
    swap_box,
    token_label_targets,
    volo_token_label_forward,
)
from elsa.volo import ElsaVOLO, TokenLabelVOLO

MICRO = dict(layers=(2, 1), img_size=32, in_chans=3, num_classes=5, patch_size=4, stem_hidden_dim=8,
             embed_dims=(32, 64), num_heads=(2, 4), downsamples=(True, False), post_layers=("ca",))


def write_official_label_map(path, logits_hwc: torch.Tensor, k: int = 5) -> None:
    """What ``generate_label.py`` saves for one image: top-k of the (H, W, C) logits, ``[2, k, H, W]`` half."""
    value, index = logits_hwc.topk(k)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torch.stack([value.half(), index.half()]).permute(0, 3, 1, 2), path)


def test_official_label_file_is_found_and_parsed(tmp_path):
    img = tmp_path / "train" / "n01440764" / "n01440764_10026.JPEG"
    where = label_map_path(tmp_path / "labels", img)
    assert where == tmp_path / "labels" / "n01440764" / "n01440764_10026.pt"
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 12) * 3  # H 3, W 4, 12 classes
    write_official_label_map(where, logits)
    m = load_label_map(where, num_classes=12)
    assert m.shape == (2, 5, 3, 4) and m.dtype == torch.float32
    dense = dense_label_maps(m[None], 12)[0]  # (12, 3, 4): the top-5 logits (fp16-rounded), 0 elsewhere
    for r in range(3):
        for c in range(4):
            top = set(logits[r, c].topk(5).indices.tolist())
            for cls in range(12):
                want = logits[r, c, cls].half().float().item() if cls in top else 0.0
                assert dense[cls, r, c].item() == pytest.approx(want)


def test_bad_label_files_fail_naming_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt: no token-label map"):
        load_label_map(tmp_path / "missing.pt")
    torch.save(torch.zeros(5, 3, 3), tmp_path / "flat.pt")
    with pytest.raises(ValueError, match=r"flat.pt: a token-label map is a \(2, k, H, W\)"):
        load_label_map(tmp_path / "flat.pt")
    (tmp_path / "junk.pt").write_text("not a tensor")
    with pytest.raises(ValueError, match="junk.pt: not a readable token-label map"):
        load_label_map(tmp_path / "junk.pt")
    write_official_label_map(tmp_path / "big.pt", torch.randn(2, 2, 20))
    with pytest.raises(ValueError, match=r"big.pt: class indices must be integers in \[0, 10\)"):
        load_label_map(tmp_path / "big.pt", num_classes=10)


def test_targets_by_hand():
    """2 x 2 map, 3 classes, top-2 per cell; whole-image crop, 2 x 2 tokens: each token's logits are its
    cell's, the class token's the mean of the 4 cells; softmax, then ``p * on + off`` (s = 0.3: 0.8, 0.1)."""
    vals = torch.tensor([[[2.0, 1.0], [3.0, 0.5]], [[1.0, 1.0], [0.0, 2.0]]])  # (k=2, H, W)
    idx = torch.tensor([[[0.0, 1.0], [2.0, 0.0]], [[1.0, 2.0], [0.0, 2.0]]])
    topk = torch.stack([vals, idx])[None]  # (1, 2, 2, 2, 2)
    t = token_label_targets(topk, torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([2]), 3, 2, smoothing=0.3)
    assert t.shape == (1, 3, 2 + 4)
    cells = {(0, 0): [2.0, 1.0, 0.0], (0, 1): [0.0, 1.0, 1.0], (1, 0): [0.0, 0.0, 3.0], (1, 1): [0.5, 0.0, 2.0]}

    def smooth_softmax(z):
        e = [math.exp(v) for v in z]
        return [x / sum(e) * 0.8 + 0.1 for x in e]

    mean = [sum(cells[p][c] for p in cells) / 4 for c in range(3)]
    torch.testing.assert_close(t[0, :, 0], torch.tensor([0.1, 0.1, 0.8]))  # ground truth 2: on 0.8, off 0.1
    torch.testing.assert_close(t[0, :, 1], torch.tensor(smooth_softmax(mean)))
    for n, p in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):  # tokens row-major
        torch.testing.assert_close(t[0, :, 2 + n], torch.tensor(smooth_softmax(cells[p])))


def test_crop_box_axis_order_official_and_xy():
    """Crop = the top half (top 0, left 0, height 0.5, width 1). ``xy`` reads it as the top row; the official
    code hands (top, left, bottom, right) to roi_align's (x1, y1, x2, y2) and so reads the left column."""
    vals = torch.tensor([[[4.0, 0.0], [0.0, 0.0]]])  # only cell (0, 0) has a score: class 1 logit 4
    idx = torch.tensor([[[1.0, 0.0], [2.0, 0.0]]])  # (0, 1) -> class 0, (1, 0) -> class 2, both score 0
    topk = torch.stack([vals, idx])[None]
    box = torch.tensor([[0.0, 0.0, 0.5, 1.0]])
    dense = dense_label_maps(topk, 3)[0]
    row = dense[:, 0, :].mean(1)
    col = dense[:, :, 0].mean(1)
    for order, want in (("xy", row), ("official", col)):
        t = token_label_targets(topk, box, torch.tensor([0]), 3, 1, smoothing=0.0, roi_order=order)
        torch.testing.assert_close(t[0, :, 1], want.softmax(0))
    with pytest.raises(ValueError, match="train.roi_order must be one of"):
        token_label_targets(topk, box, torch.tensor([0]), 3, 1, roi_order="yx")


def test_loss_by_hand():
    ln = math.log
    cls = torch.tensor([[0.0, 0.0], [ln(3), 0.0]])
    aux = torch.zeros(2, 2, 2)
    aux[0, 0] = torch.tensor([ln(3), 0.0])
    target = torch.zeros(2, 2, 4)  # (B, C, gt + cls + 2 tokens)
    target[:, :, 0] = torch.tensor([[0.0, 1.0], [0.0, 1.0]])  # ground truth
    target[:, :, 1] = torch.tensor([[1.0, 0.0], [0.25, 0.75]])  # class-token targets
    target[:, :, 2:] = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.5, 0.5], [0.5, 0.5]]]).transpose(1, 2)
    # aux: token (0, 0) has p = (3/4, 1/4) and target (1, 0); every other token has logits 0, so CE = ln 2
    l_aux = (-ln(0.75) + 3 * ln(2)) / 4

    def ce_row1(t):  # cls row 1: p = (3/4, 1/4)
        return -(t[0] * ln(0.75) + t[1] * ln(0.25))

    plain = TokenLabelLoss(dense_weight=0.5, cls_weight=1.0)
    want = (ln(2) + ce_row1([0.25, 0.75])) / 2 + 0.5 * l_aux
    assert plain(cls, aux, (0, 0, 0, 0), target).item() == pytest.approx(want, rel=1e-6)
    # MixToken box of 1 of the 2 tokens: lam = 1/2, class targets mixed with the batch flip
    mixed = [0.625, 0.375]
    want = (ln(2) + ce_row1(mixed)) / 2 + 0.5 * l_aux
    assert plain(cls, aux, (0, 0, 1, 1), target).item() == pytest.approx(want, rel=1e-6)
    # ground truth blend: image 0 disagrees (0.9 t + 0.1 gt), image 1 agrees (0.5 t + 0.5 gt)
    gt = TokenLabelLoss(dense_weight=2.0, cls_weight=0.5, ground_truth=True)
    t0, t1 = [0.9, 0.1], [0.125, 0.875]
    want = 0.5 * (-(t0[0] * ln(0.5) + t0[1] * ln(0.5)) + ce_row1(t1)) / 2 + 2.0 * l_aux
    assert gt(cls, aux, (0, 0, 0, 0), target).item() == pytest.approx(want, rel=1e-6)
    with pytest.raises(ValueError, match="set train.token_label_size to the aux grid side"):
        plain(cls, torch.zeros(2, 4, 2), (0, 0, 0, 0), target)


def test_mix_token_box_follows_the_official_rule():
    assert mix_token_box(14, 14, 0.75, 7, 7) == (4, 4, 10, 10)  # side int(14 * 0.5) = 7, half 3
    assert mix_token_box(14, 14, 0.75, 0, 13) == (0, 10, 3, 14)  # clipped at the borders
    assert mix_token_box(14, 14, 1.0, 5, 5) == (5, 5, 5, 5)  # lam 1: empty box
    x = torch.arange(2 * 4 * 4).view(2, 4, 4, 1)
    y = swap_box(x, (1, 0, 2, 1), scale=2)  # token rows 1..2, cols 0..1 -> pixels rows 2..4, cols 0..2
    assert torch.equal(y[0, 2:4, 0:2], x[1, 2:4, 0:2]) and torch.equal(y[0, :2], x[0, :2])
    assert torch.equal(swap_box(y, (1, 0, 2, 1), scale=2), x)


def test_mix_token_keeps_each_images_dense_outputs_its_own():
    """With a per-token network the un-mixed aux outputs equal the unmixed run's at every token (the dense
    targets stay each image's), while the class token sees the mixed image."""
    torch.manual_seed(0)
    m = TokenLabelVOLO(**MICRO).train()
    m.patch_embed = torch.nn.Conv2d(3, 32, 4, 4)  # no BatchNorm: batch statistics would couple images
    m.forward_tokens = lambda x: torch.nn.functional.avg_pool2d(x.permute(0, 3, 1, 2), 2).flatten(2).transpose(1, 2)
    m.aux_head = torch.nn.Linear(32, 5)
    m.head = torch.nn.Linear(32, 5)
    m.norm = torch.nn.Identity()
    m.forward_cls = lambda x: torch.cat([x.mean(1, keepdim=True), x], 1)
    x = torch.randn(3, 3, 32, 32)
    ref_cls, ref_aux, _ = volo_token_label_forward(m, x, mix_token=False)
    for seed in range(20):
        torch.manual_seed(seed)
        cls, aux, box = volo_token_label_forward(m, x, mix_token=True)
        if box[2] > box[0] and box[3] > box[1]:
            break
    assert box[2] > box[0] and box[3] > box[1]
    torch.testing.assert_close(aux, ref_aux)
    assert not torch.allclose(cls, ref_cls)


@pytest.mark.parametrize("cls", [ElsaVOLO, TokenLabelVOLO])
def test_dense_forward_gives_timms_eval_logits(cls):
    """Without mixing, class logits + 0.5 * max over tokens of the aux logits = timm's eval output (VOLO's
    inference rule), so the training outputs are the same logits evaluation uses."""
    torch.manual_seed(0)
    m = cls(**MICRO).eval()
    x = torch.randn(2, 3, 32, 32)
    c, a, box = volo_token_label_forward(m, x, mix_token=False)
    assert box == (0, 0, 0, 0) and a.shape == (2, 16, 5)
    torch.testing.assert_close(c + 0.5 * a.max(1)[0], m(x))
    m.token_label_train = True
    assert isinstance(m.train()(x), tuple) and torch.is_tensor(m.eval()(x))


def test_geometric_ops_move_the_map_with_the_image():
    """A 16 px image of 4 x 4 px blocks valued 1..16 and the 4 x 4 map of the same values: translations and
    shears (official label ops) give the image's block values wherever the map cell is inside the image
    (shears only up to a sub-cell offset in general: PIL puts the origin at the pixel corner, scipy at the
    first cell's centre; with these arguments exactly); the official rotation turns the same way but about
    (W/2, H/2) in cell indices, half a cell off the image's centre: at 90 degrees the map lags the image by one
    row (kept as released)."""
    from timm.data import auto_augment as aa

    blocks = np.arange(16).reshape(4, 4) + 1
    im = Image.fromarray(np.repeat(np.kron(blocks, np.ones((4, 4)))[..., None], 3, -1).astype(np.uint8))
    lab = torch.stack([torch.ones(1, 4, 4), torch.from_numpy(blocks).float()[None]])
    kw = dict(fillcolor=(0, 0, 0), resample=Image.NEAREST)
    for name, op, arg in (("TranslateXRel", aa.translate_x_rel, 0.25), ("TranslateYRel", aa.translate_y_rel, -0.25),
                          ("ShearX", aa.shear_x, 0.5), ("ShearY", aa.shear_y, 0.5)):
        img = torch.from_numpy(np.asarray(op(im, arg, **kw))[2::4, 2::4, 0].astype(np.float32))
        out = LABEL_OPS[name](lab, arg)
        inside = out[0, 0] > 0
        assert inside.sum() >= 9, name
        torch.testing.assert_close(out[1, 0][inside], img[inside], msg=name)
    img = torch.from_numpy(np.asarray(aa.rotate(im, 90.0, **kw))[2::4, 2::4, 0].astype(np.float32))
    out = LABEL_OPS["Rotate"](lab, 90.0)
    torch.testing.assert_close(out[1, 0][1:], img[:3])


def make_tree(root, n_classes=3, per_class=2, map_hw=(3, 3)):
    """ImageNet-style train/val folders of 40 x 48 JPEGs, and label maps in the official format."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(n_classes):
            for i in range(per_class):
                p = root / "imagenet" / split / f"n0000000{c}" / f"n0000000{c}_{i}.JPEG"
                p.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(p)
                if split == "train":
                    write_official_label_map(label_map_path(root / "labels", p),
                                             torch.randn(*map_hw, n_classes), k=2)


def tiny_cfg(root, extra=()):
    from elsa import reproduce
    from elsa.train import ElsaConfig
    from shared.config import load_config
    return load_config(reproduce.config_path("default", "elsa_volo"), ElsaConfig, [
        f"data.root={root / 'imagenet'}", "data.dataset=imagenet1k", "data.num_classes=3", "model.in_chans=3",
        "data.mixup=0", "data.cutmix=0", "train.token_label=true", f"train.token_label_root={root / 'labels'}",
        "train.token_label_size=4", *extra])


def test_one_training_step_on_a_fixture_tree(tmp_path):
    from torch.utils.data import DataLoader

    from elsa.train import ElsaTask

    make_tree(tmp_path)
    task = ElsaTask(tiny_cfg(tmp_path))
    x, maps, box, y = next(iter(DataLoader(task.train_set, batch_size=4, shuffle=False)))
    assert x.shape == (4, 3, 32, 32) and maps.shape == (4, 2, 2, 3, 3) and box.shape == (4, 4)
    assert ((box[:, :2] >= 0) & (box[:, :2] + box[:, 2:] <= 1 + 1e-6)).all()
    torch.manual_seed(0)
    model = task.build_model().train()
    loss = task.training_step(model, (x, maps, box, y), None)["loss"]
    loss.backward()
    assert torch.isfinite(loss) and model.aux_head.weight.grad.abs().sum() > 0
    assert model.network[0][0].attn.ghost_head.grad is not None  # the ELSA stage learns from it too
    with pytest.raises(ValueError, match="train.token_label_size must be the aux-token grid side"):
        ElsaTask(tiny_cfg(tmp_path, ["train.token_label_size=14"]))
    with pytest.raises(FileNotFoundError, match="train.token_label_root=.*nowhere: no such folder"):
        ElsaTask(tiny_cfg(tmp_path, [f"train.token_label_root={tmp_path / 'nowhere'}"]))
    with pytest.raises(ValueError, match="needs model.family=volo"):
        ElsaTask(tiny_cfg(tmp_path, ["model.family=swin", "model.mixer=elsa"]))


def test_transform_flips_the_map_and_records_the_crop_box():
    """Official order: flip (image and map) first, the random resized crop last, its box recorded as
    fractions (top, left, height, width) of the flipped image."""
    from torchvision.transforms import functional as TF

    from elsa.token_label import TokenLabelTransform

    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
    lab = torch.stack([torch.rand(2, 3, 4), torch.randint(0, 9, (2, 3, 4)).float()])
    tf = TokenLabelTransform(16, auto_augment="", color_jitter=0.0, reprob=0.0, interpolation="bilinear", hflip=1.0)
    tf.crop.get_params = lambda img, scale, ratio: (10, 6, 20, 30)  # i, j, h, w
    x, out, box = tf(im, lab)
    torch.testing.assert_close(out, lab.flip(3))
    torch.testing.assert_close(box, torch.tensor([10 / 40, 6 / 60, 20 / 40, 30 / 60]))
    want = tf.final(TF.resized_crop(TF.hflip(im), 10, 6, 20, 30, [16, 16], tf.crop.interpolation))
    torch.testing.assert_close(x, want)
