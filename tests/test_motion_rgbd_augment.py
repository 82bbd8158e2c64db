"""Official training augmentation (lib/datasets/base.py + config/*.yml): no flip for NvGesture/IsoGD,
flip for NTU/THU-READ, one draw per clip, the crop/flip geometry against the test transform."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from motion_rgbd.data import RGBDVideoDataset, TrainAugment, eval_geometry, rotate, train_geometry
from motion_rgbd.train import MotionConfig
from shared.config import load_config

CONFIGS = Path(__file__).parents[1] / "motion_rgbd" / "configs"


def _frame(h=24, w=32, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_train_geometry_without_rotation_or_flip_is_the_test_crop_at_the_drawn_offset():
    im = _frame()
    p = {"angle": 0, "offset": (3, 5), "flip": False}
    assert np.array_equal(train_geometry(im, 8, p, (20, 16), 12), eval_geometry(im, 8, (20, 16), 12, (3, 5)))
    flipped = train_geometry(im, 12, dict(p, flip=True), (20, 16), 12)
    assert np.array_equal(flipped, train_geometry(im, 12, p, (20, 16), 12)[:, ::-1])


def test_rotation_is_about_the_centre_and_zero_angle_is_identity():
    im = np.zeros((9, 9, 3), np.uint8)
    im[4, 4] = 200  # the centre pixel (4.5, 4.5 in cv2's continuous frame is the pixel's corner, so widen it)
    im[3:6, 3:6] = 200
    assert np.array_equal(rotate(im, 0), im)
    r = rotate(im, 90)
    assert r[4, 4].max() > 0 and r[0].max() == 0 and r[:, 0].max() == 0  # stays at the centre, borders zero


@pytest.mark.parametrize("aug,flips", [(TrainAugment(flip=0.0, rotate_p=0.5), False),
                                       (TrainAugment(flip=0.5, rotate_p=0.8, angle=(-45, 45)), True)])
def test_draws_respect_the_recipe(aug, flips):
    rng = np.random.default_rng(0)
    draws = [aug.draw(rng, (320, 240), 224) for _ in range(400)]
    assert any(d["flip"] for d in draws) == flips
    angles = [d["angle"] for d in draws]
    assert all(aug.angle[0] <= a < aug.angle[1] for a in angles)
    assert 0.3 < np.mean([a != 0 for a in angles]) < aug.rotate_p + 0.1
    assert all(0 <= d["offset"][0] < 96 and 0 <= d["offset"][1] < 16 for d in draws)
    assert aug.draw(rng, None, 0)["offset"] is None  # no resize: nothing to crop


def test_configs_flip_only_where_the_official_recipe_flips():
    for path in CONFIGS.glob("motionrgbd_*.yaml"):
        d = load_config(path, MotionConfig).data
        mirrors = d.name in ("ntu", "thu_read")
        assert (d.flip == 0.5) == mirrors and (d.flip == 0.0) == (not mirrors), path.name
        assert d.rotate_p == (0.8 if d.name == "thu_read" else 0.5), path.name
        assert list(d.angle) == ([-45, 45] if d.name == "thu_read" else [-10, 10]), path.name


def test_nvgesture_train_offsets_follow_nvdata():
    d = load_config(CONFIGS / "motionrgbd_i3d-dsn_8xb4-100e_nvgesture-rgb.yaml", MotionConfig).data
    aug = TrainAugment(d.flip, d.rotate_p, tuple(d.angle), tuple(d.train_offsets))
    rng = np.random.default_rng(1)
    offs = np.array([aug.draw(rng, tuple(d.resize), d.crop)["offset"] for _ in range(600)])
    assert offs.min() == 10 and offs.max() == 32  # random.randint(10, 32): both ends reachable


def _nv_tree(root, n=6):
    x = np.tile(np.linspace(0, 250, 16, dtype=np.uint8)[None, :, None], (16, 1, 3))  # brighter to the right
    for mod in ("rgb", "depth"):
        d = root / mod / "train/class_01/subject1_r0"
        d.mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(d / f"{i:06d}.jpg"), x)
    (root / "dataset_splits").mkdir()
    (root / "dataset_splits/train.txt").write_text(f"train/class_01/subject1_r0 {n} 0\n")
    return root / "dataset_splits/train.txt"


def test_dataset_applies_the_augmentation_only_when_training(tmp_path):
    lst = _nv_tree(tmp_path)
    kw = dict(frames=4, size=16, window=2)
    test = RGBDVideoDataset(tmp_path, lst, "nvgesture", "rgb", train=False, augment=TrainAugment(flip=1.0), **kw)
    flip = RGBDVideoDataset(tmp_path, lst, "nvgesture", "rgb", train=True, augment=TrainAugment(flip=1.0), **kw)
    keep = RGBDVideoDataset(tmp_path, lst, "nvgesture", "rgb", train=True, augment=TrainAugment(flip=0.0), **kw)
    x_test, x_flip, x_keep = test[0][0], flip[0][0], keep[0][0]
    assert x_test[..., -1].mean() > x_test[..., 0].mean()  # test: untouched
    assert torch.allclose(x_keep, x_test, atol=1e-6)  # flip 0, no rotation, no resize: the test frames
    assert torch.allclose(x_flip, x_test.flip(-1), atol=1e-6)  # flip 1: mirrored
