"""TransFGU data: embedded scenes, VOC 2012 / Cityscapes layouts (fixture trees), Hungarian scoring."""
import numpy as np
import pytest
import torch
from PIL import Image

from shared.data.verify import REGISTRY
from transfgu.data import VOCSegmentation, cityscapes_label_map, textured_scenes
from transfgu.pipeline import score_maps


def test_scenes_deterministic_and_labelled():
    a, b = textured_scenes(6, 3, 48), textured_scenes(6, 3, 48)
    assert a.images.shape == (6, 3, 48, 48) and a.labels.shape == (6, 48, 48)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.labels.min() >= 0 and a.labels.max() < 7 and (a.labels >= 3).any()  # things present


def test_hungarian_on_permuted_ground_truth_is_perfect():
    lab = textured_scenes(4, 0, 32).labels
    perm = torch.tensor([4, 0, 6, 1, 5, 2, 3])
    onehot = torch.nn.functional.one_hot(perm[lab], 7).permute(0, 3, 1, 2).float()
    s = score_maps(onehot, lab, 7)
    assert s["mIoU"] == pytest.approx(100.0) and s["acc"] == pytest.approx(100.0)


def write_voc(root, ids, bad_label=False):
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    for i in ids:
        Image.fromarray(np.full((20, 30, 3), 100, np.uint8)).save(root / "JPEGImages" / f"{i}.jpg")
        lab = np.zeros((20, 30), np.uint8)
        lab[5:10, 5:10] = 40 if bad_label else 15
        lab[0] = 255
        Image.fromarray(lab).save(root / "SegmentationClass" / f"{i}.png")
    for split in ("train", "val"):
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")


def test_voc_fixture_loads_and_verifies(tmp_path):
    write_voc(tmp_path, ["2007_000032", "2007_000039"])
    assert REGISTRY["transfgu.voc2012"].fn(tmp_path) == []
    ds = VOCSegmentation(tmp_path, "val", size=16)
    img, lab = ds[0]
    assert img.shape == (3, 16, 16) and lab.shape == (16, 16)
    assert set(lab.unique().tolist()) <= {-1, 0, 15} and (lab == -1).any()


def test_voc_malformed_tree_names_the_file(tmp_path):
    write_voc(tmp_path, ["a"], bad_label=True)
    (tmp_path / "SegmentationClass" / "a.png").rename(tmp_path / "SegmentationClass" / "b.png")
    problems = REGISTRY["transfgu.voc2012"].fn(tmp_path)
    assert problems and "a.png missing" in problems[0] and "train.txt:1" in problems[0]
    with pytest.raises(FileNotFoundError, match="a.png"):
        VOCSegmentation(tmp_path, "val")[0]
    (tmp_path / "SegmentationClass" / "b.png").rename(tmp_path / "SegmentationClass" / "a.png")
    with pytest.raises(ValueError, match="a.png: label value 40"):
        VOCSegmentation(tmp_path, "val")[0]


def test_cityscapes_verify_and_label_map(tmp_path):
    for split in ("train", "val"):
        d = tmp_path / "leftImg8bit" / split / "aachen"
        d.mkdir(parents=True)
        (d / "aachen_000000_000019_leftImg8bit.png").write_bytes(b"")
        g = tmp_path / "gtFine" / split / "aachen"
        g.mkdir(parents=True)
        if split == "train":
            (g / "aachen_000000_000019_gtFine_labelIds.png").write_bytes(b"")
    problems = REGISTRY["transfgu.cityscapes"].fn(tmp_path)
    assert len(problems) == 1 and "val" in problems[0] and "_gtFine_labelIds.png missing" in problems[0]
    assert cityscapes_label_map(np.array([0, 6, 7, 33, 34])).tolist() == [-1, -1, 0, 26, -1]


def test_build_dataset_keeps_voc_and_checks_class_sets(tmp_path):
    from transfgu.data import build_dataset

    write_voc(tmp_path, ["2007_000032"])
    ds = build_dataset("voc", tmp_path, "val", 20, resize=16)
    assert isinstance(ds, VOCSegmentation) and ds[0][0].shape == (3, 16, 16)
    with pytest.raises(ValueError, match="20 classes"):
        build_dataset("voc", tmp_path, "val", 21)
    with pytest.raises(ValueError, match="27 classes"):
        build_dataset("cityscapes", tmp_path, "val", 19)
    with pytest.raises(ValueError, match="expected one of"):
        build_dataset("ade20k", tmp_path, "val", 150)
