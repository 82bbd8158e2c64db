"""ELSA backbones for dense tasks: ``features_only`` shapes and strides, torchvision Mask R-CNN
forward/backward on a tiny batch, the COCO and ADE20K loaders on fixture trees, COCO AP of a perfect
prediction, the UperNet head's shapes and mmseg's poly schedule."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from elsa.detection import coco_dataset, coco_evaluate, coco_problems, elsa_maskrcnn
from elsa.segmentation import ADE20K, UPerHead, elsa_upernet, evaluate_miou
from elsa.volo import VOLO_RESOLUTIONS, VOLO_SIZES

SMALL = dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4))  # ELSA-Swin layout, tiny widths


@pytest.mark.parametrize("name,img,strides,channels", [
    ("elsa_swin_tiny", 224, [4, 8, 16, 32], [96, 192, 384, 768]),
    ("elsa_volo_d1_224", 224, [8, 16, 16, 16], [192, 384, 384, 384]),
])
def test_features_only_shapes_and_strides(name, img, strides, channels):
    f = timm.create_model(name, features_only=True)
    assert f.feature_info.reduction() == strides and f.feature_info.channels() == channels
    outs = f(torch.randn(1, 3, img, img))
    assert [tuple(o.shape) for o in outs] == [(1, c, img // s, img // s) for c, s in zip(channels, strides)]


SWIN_WIDTH = {"elsa_swin_tiny": 96, "elsa_swin_small": 96, "elsa_swin_base": 128}  # Swin's embed_dim
EVERY_MODEL = list(SWIN_WIDTH) + [f"elsa_volo_{d}_{r}" for d, rs in VOLO_RESOLUTIONS.items() for r in rs]


@pytest.mark.parametrize("name", EVERY_MODEL)
def test_features_only_for_every_elsa_model(name):
    """Every registered ELSA model builds with ``features_only=True`` and gives NCHW maps at its own input
    size (meta device: shapes only). Channels from the architecture: Swin doubles ``embed_dim`` per stage
    (strides 4-32); VOLO keeps its ``embed_dims`` (strides 8, 16, 16, 16: no stride-32 stage)."""
    if name in SWIN_WIDTH:
        channels, strides = [SWIN_WIDTH[name] * 2 ** i for i in range(4)], [4, 8, 16, 32]
    else:
        channels, strides = list(VOLO_SIZES[name.split("_")[2]]["embed_dims"]), [8, 16, 16, 16]
    with torch.device("meta"):
        f = timm.create_model(name, features_only=True).eval()
        img = f.pretrained_cfg["input_size"][-1]
        outs = f(torch.empty(2, 3, img, img))
    assert f.feature_info.channels() == channels and f.feature_info.reduction() == strides
    assert [tuple(o.shape) for o in outs] == [(2, c, img // s, img // s) for c, s in zip(channels, strides)]
    if name.startswith("elsa_volo"):
        assert img == int(name.rsplit("_", 1)[1])  # the _384/_448/_512 names run at their resolution


def test_features_only_out_indices_and_any_size():
    f = timm.create_model("elsa_swin_small", features_only=True, out_indices=(1, 3), strict_img_size=False,
                          **SMALL)
    assert f.feature_info.reduction() == [8, 32]
    assert [tuple(o.shape[2:]) for o in f(torch.randn(2, 3, 96, 160))] == [(12, 20), (3, 5)]


def test_features_match_the_classifier_trunk():
    """Stage-3 features of the features_only model are the classifier's features before its norm."""
    torch.manual_seed(0)
    full = timm.create_model("elsa_swin_tiny", img_size=64, **SMALL).eval()
    f = timm.create_model("elsa_swin_tiny", img_size=64, features_only=True, **SMALL).eval()
    f.model.load_state_dict({k: v for k, v in full.state_dict().items() if not k.startswith(("head", "norm."))})
    x = torch.randn(1, 3, 64, 64)
    trunk = full.layers(full.patch_embed(x)).permute(0, 3, 1, 2)
    torch.testing.assert_close(f(x)[-1], trunk)


def _targets():
    m1 = torch.zeros(1, 64, 96, dtype=torch.uint8)
    m1[0, 10:40, 20:60] = 1
    return [{"boxes": torch.tensor([[20., 10., 60., 40.]]), "labels": torch.tensor([1]), "masks": m1},
            {"boxes": torch.tensor([[4., 8., 50., 60.]]), "labels": torch.tensor([2]),
             "masks": torch.ones(1, 72, 64, dtype=torch.uint8)}]


def test_maskrcnn_forward_backward_with_the_elsa_backbone():
    torch.manual_seed(0)
    model = elsa_maskrcnn(num_classes=3, min_size=64, max_size=96, **SMALL)
    assert model.backbone.out_channels == 256
    losses = model([torch.rand(3, 64, 96), torch.rand(3, 72, 64)], _targets())
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    sum(losses.values()).backward()
    elsa = model.backbone.body.model.layers[0].blocks[0].attn
    assert elsa.__class__.__name__ == "ELSA"
    for p in (elsa.pre_proj.weight, elsa.ghost_head, elsa.attn[0].weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    model.eval()
    out = model([torch.rand(3, 64, 96)])[0]
    assert set(out) == {"boxes", "labels", "scores", "masks"} and out["masks"].shape[1:] == (1, 64, 96)


def _coco_tree(root):
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    Image.new("RGB", (96, 64), (120, 80, 40)).save(root / "val2017" / "000000000001.jpg")
    seg = [[20., 10., 60., 10., 60., 40., 20., 40.]]
    ann = {"images": [{"id": 1, "file_name": "000000000001.jpg", "width": 96, "height": 64}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [20., 10., 40., 30.],
                            "area": 1200., "iscrowd": 0, "segmentation": seg}],
           "categories": [{"id": 3, "name": "car"}]}
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(ann))


class _Oracle(torch.nn.Module):
    """Returns the ground truth of the fixture image as its detection."""

    def forward(self, images):
        m = torch.zeros(1, 1, 64, 96)
        m[0, 0, 10:40, 20:60] = 1
        return [{"boxes": torch.tensor([[20., 10., 60., 40.]]), "labels": torch.tensor([3]),
                 "scores": torch.tensor([0.9]), "masks": m} for _ in images]


def test_coco_loader_and_ap_on_a_fixture_tree(tmp_path):
    assert len(coco_problems(tmp_path)) == 2
    with pytest.raises(FileNotFoundError, match="annotation file missing"):
        coco_dataset(tmp_path, "val2017", train=False)
    _coco_tree(tmp_path)
    assert coco_problems(tmp_path) == []
    ds = coco_dataset(tmp_path, "val2017", train=False)
    img, tgt = ds[0]
    assert img.shape == (3, 64, 96) and img.dtype == torch.float32
    assert tgt["boxes"].tolist() == [[20., 10., 60., 40.]] and tgt["labels"].tolist() == [3]
    assert tgt["masks"].shape == (1, 64, 96) and 1100 < int(tgt["masks"].sum()) < 1400
    res = coco_evaluate(_Oracle(), ds, 1, torch.device("cpu"))
    assert res["bbox_AP"] == pytest.approx(100.0) and res["segm_AP"] > 90.0


def test_upernet_shapes_and_aux_head():
    head = UPerHead([16, 32, 64, 128], num_classes=5, channels=24)
    feats = [torch.randn(2, c, 32 // s, 48 // s) for c, s in zip([16, 32, 64, 128], [1, 2, 4, 8])]
    assert head(feats).shape == (2, 5, 32, 48)
    model = elsa_upernet(num_classes=5, channels=24, aux_channels=8, **SMALL)
    x = torch.randn(2, 3, 64, 96)
    out, aux = model(x)
    assert out.shape == aux.shape == (2, 5, 64, 96)
    out.sum().backward()
    assert model.body.model.layers[0].blocks[0].attn.ghost_head.grad is not None
    assert model.eval()(x).shape == (2, 5, 64, 96)


def _ade_tree(root, n=2):
    for split in ("training", "validation"):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (80, 60), (i * 50, 10, 10)).save(root / "images" / split / f"ADE_{i}.jpg")
            lab = np.zeros((60, 80), np.uint8)
            lab[:, 40:] = 3  # class 3 on the right half, 0 ("other", ignored) on the left
            Image.fromarray(lab).save(root / "annotations" / split / f"ADE_{i}.png")


def test_ade20k_loader_reduces_zero_label_and_crops(tmp_path):
    with pytest.raises(FileNotFoundError, match="folder missing"):
        ADE20K(tmp_path, "val")
    _ade_tree(tmp_path)
    x, y = ADE20K(tmp_path, "val", scale=(160, 120))[0]
    assert x.shape == (3, 120, 160) and y.shape == (120, 160)
    assert set(torch.unique(y).tolist()) == {2, 255}  # 3 -> 2, 0 -> ignored
    torch.manual_seed(0)
    x, y = ADE20K(tmp_path, "train", crop=64, scale=(160, 120))[1]
    assert x.shape == (3, 64, 64) and y.shape == (64, 64) and set(torch.unique(y).tolist()) <= {2, 255}
    (tmp_path / "annotations" / "validation" / "ADE_1.png").unlink()
    with pytest.raises(FileNotFoundError, match="annotation missing"):
        ADE20K(tmp_path, "val")


def test_miou_of_a_perfect_and_of_a_constant_model(tmp_path):
    _ade_tree(tmp_path)
    ds = ADE20K(tmp_path, "val", scale=(80, 60))

    class Const(torch.nn.Module):
        def __init__(self, cls):
            super().__init__()
            self.cls = cls

        def forward(self, x):
            out = torch.zeros(x.shape[0], 4, *x.shape[2:])
            out[:, self.cls] = 1
            return out

    assert evaluate_miou(Const(2), ds, 4, torch.device("cpu"))["mIoU"] == pytest.approx(100.0)
    r = evaluate_miou(Const(1), ds, 4, torch.device("cpu"), ms_flip=True)
    assert r["mIoU"] == 0.0 and r["aAcc"] == 0.0


def _former_poly_lr(step: int, total: int, base: float) -> float:
    """The task's own schedule before the engine had ``sched.name: poly`` (``elsa.segmentation.poly_lr`` with
    the config's former ``poly:`` section: warmup_iters 1500, warmup_ratio 1e-6, power 1, min_lr 0), verbatim."""
    warmup_iters, warmup_ratio, power, min_lr = 1500, 0.000001, 1.0, 0.0
    lr = (base - min_lr) * (1 - min(step, total) / total) ** power + min_lr
    if step < warmup_iters:
        lr *= 1 - (1 - step / warmup_iters) * (1 - warmup_ratio)
    return lr


def test_upernet_config_gives_the_former_poly_lr_sequence_exactly():
    """The ADE20K config on the engine's poly schedule sets the very floats the task's hook set, for every one
    of the 160,401 updates (and after the end), in every parameter group."""
    from pathlib import Path

    from elsa.segmentation import SegConfig
    from shared.config import load_config
    from shared.engine.optim import build_optimizer, build_scheduler

    configs = Path(__file__).resolve().parents[1] / "elsa" / "configs"
    cfg = load_config(configs / "upernet_elsa-swin-tiny_8xb2-160k_ade20k.yaml", SegConfig)
    per_epoch = 20210 // cfg.engine.batch_size  # ADE20K train: the former hook's count of updates per epoch
    total = cfg.engine.epochs * per_epoch
    assert total == 160401  # 127 x 1,263
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr_factor": f} for f in (1.0, 2.0)]
    opt = build_optimizer(groups, cfg.optim)
    sched = build_scheduler(opt, cfg.sched, cfg.optim.lr, cfg.engine.epochs, per_epoch)
    bases = [cfg.optim.lr * f for f in (1.0, 2.0)]
    for step in range(total + 3):
        if step:  # the engine calls step_update(n) after the n-th update, the hook set poly_lr(n) then
            sched.step_update(step)
        got = [g["lr"] for g in opt.param_groups]
        want = [_former_poly_lr(step, total, b) for b in bases]
        assert got == want, (step, got, want)


def test_dense_configs_load_and_need_a_root():
    from elsa.detection import DetConfig, DetectionTask
    from elsa.segmentation import SegConfig, SegmentationTask
    from shared.config import load_config

    configs = Path(__file__).resolve().parents[1] / "elsa" / "configs"
    det = load_config(configs / "maskrcnn_elsa-swin-tiny-fpn_8xb2-1x_coco.yaml", DetConfig)
    assert (det.engine.epochs, det.engine.batch_size, det.optim.lr) == (12, 16, 1e-4)
    assert det.sched.decay_milestones == [8, 11]
    seg = load_config(configs / "upernet_elsa-swin-tiny_8xb2-160k_ade20k.yaml", SegConfig)
    assert seg.engine.epochs * (20210 // seg.engine.batch_size) >= 160000 and seg.sched.name == "poly"
    with pytest.raises(ValueError, match="data.root"):
        DetectionTask(det)
    with pytest.raises(ValueError, match="data.root"):
        SegmentationTask(seg)


def test_backbone_starts_from_a_released_classification_file(tmp_path):
    """``model.init_checkpoint`` of the dense tasks: an official-layout ELSA-Swin file, loaded strictly
    into the classifier, then its trunk into the features_only body (head and final norm dropped)."""
    from elsa.checkpoint import timm_to_official
    from elsa.detection import elsa_backbone

    torch.manual_seed(0)
    src = timm.create_model("elsa_swin_tiny", **SMALL)
    path = tmp_path / "elsa_swin_tiny.pth"
    torch.save({"state_dict": timm_to_official(src.state_dict())}, path)
    body = elsa_backbone("elsa_swin_tiny", str(path), **SMALL)
    got = body.model.state_dict()
    for k in ("layers.0.blocks.0.attn.ghost_head", "layers.3.blocks.0.attn.qkv.weight", "patch_embed.proj.weight"):
        torch.testing.assert_close(got[k], src.state_dict()[k])
    torch.save({"state_dict": {"patch_embed.proj.weight": torch.zeros(1)}}, tmp_path / "bad.pth")
    with pytest.raises(Exception, match="bad.pth"):
        elsa_backbone("elsa_swin_tiny", str(tmp_path / "bad.pth"), **SMALL)


def test_dense_rows_train_and_evaluate_end_to_end_on_fixture_trees(tmp_path, capsys):
    """``python -m elsa.detection`` / ``elsa.segmentation`` as a user runs them (the shipped configs, tiny
    inputs): one epoch on a COCO and an ADE20K fixture tree, then COCO AP and mIoU through the engine."""
    from elsa import detection, segmentation

    coco, ade = tmp_path / "coco", tmp_path / "ade"
    _coco_tree(coco)
    (coco / "train2017").mkdir()
    Image.new("RGB", (96, 64), (120, 80, 40)).save(coco / "train2017" / "000000000001.jpg")
    ann = (coco / "annotations" / "instances_val2017.json").read_text()
    (coco / "annotations" / "instances_train2017.json").write_text(ann)
    _ade_tree(ade)
    configs = Path(__file__).resolve().parents[1] / "elsa" / "configs"
    common = ["engine.epochs=1", "engine.num_workers=0", "engine.amp=off", "engine.eval_every=1",
              "logger.progress=false", "engine.device=cpu"]
    det = detection.main(["--config", str(configs / "maskrcnn_elsa-swin-tiny-fpn_8xb2-1x_coco.yaml"), "--run-dir",
                          str(tmp_path / "det"), f"data.root={coco}", "model.min_size=64", "model.max_size=96",
                          "model.num_classes=4", "data.eval_max_images=1", "engine.batch_size=1", *common])
    assert {"bbox_AP", "segm_AP", "train/loss_mask"} <= set(det)
    seg_args = [f"data.root={ade}", "data.crop=64", "model.channels=32", "model.aux_channels=16",
                "data.eval_max_images=1", "sched.warmup_updates=0", *common]
    seg_cfg = ["--config", str(configs / "upernet_elsa-swin-tiny_8xb2-160k_ade20k.yaml")]
    seg = segmentation.main(seg_cfg + ["--run-dir", str(tmp_path / "seg"), *seg_args, "engine.batch_size=2"])
    assert {"mIoU", "aAcc", "train/loss_aux"} <= set(seg)
    with pytest.raises(SystemExit):  # the PPM's 1x1 map: BatchNorm needs two images
        segmentation.main(seg_cfg + ["--run-dir", str(tmp_path / "seg1"), *seg_args, "engine.batch_size=1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert "at least 2 images per rank" in err[-1]


@pytest.mark.parametrize("world, backend, sync", [(1, "", False), (8, "nccl", True), (8, "gloo", False)])
def test_upernet_heads_use_sync_batchnorm_on_several_gpus(tmp_path, monkeypatch, world, backend, sync):
    """mmseg's Swin/ELSA UperNet configs normalise the heads with SyncBN (batch 16 over 8 GPUs, 2 each):
    ``model.sync_bn`` converts the BatchNorms when the process group is NCCL, never on one process or gloo."""
    from elsa import segmentation
    from elsa.segmentation import SegConfig, SegmentationTask
    from shared.config import load_config

    _ade_tree(tmp_path)
    monkeypatch.setattr(segmentation, "_dist_world", lambda: (world, backend))
    configs = Path(__file__).resolve().parents[1] / "elsa" / "configs"
    cfg = load_config(configs / "upernet_elsa-swin-tiny_8xb2-160k_ade20k.yaml", SegConfig,
                      [f"data.root={tmp_path}", "model.channels=16", "model.aux_channels=8"])
    task = SegmentationTask(cfg)
    kinds = {type(m) for m in task.build_model().modules()}
    assert (torch.nn.SyncBatchNorm in kinds, torch.nn.BatchNorm2d in kinds) == (sync, not sync)
