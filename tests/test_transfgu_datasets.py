"""TransFGU real-data loaders: COCO-Stuff (27 / 171 / COCO-80), Cityscapes-27, LIP-5/16/19 on fixture trees in
the real layouts, the official label maps pinned on hand-picked ids, malformed input -> one line naming the file."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from shared.data.verify import REGISTRY
from transfgu.data import (
    INVALID,
    LIP,
    Cityscapes,
    COCOStuff,
    build_dataset,
    cityscapes_lut,
    coco_lut,
    input_size,
    lip_lut,
)
from transfgu.generate import RECIPES, cluster_sizes
from transfgu.model import box_anchors


# ----------------------------------------------------------------------------- label maps by hand
def test_coco_27_coarse_map_on_hand_picked_ids():
    lut = coco_lut(27)
    # stuffthingmap value = COCO id - 1: person 0 -> person (9); car 2 -> vehicle (11); bird 15 -> animal (7);
    # banana 51 -> food (2); tv 71 -> electronic (0); microwave 77 -> kitchen (1)... as PiCIE's fine->coarse map
    for fine, coarse in {0: 9, 2: 11, 15: 7, 51: 2, 71: 0, 77: 1, 83: 4, 43: 5, 61: 3, 33: 10, 25: 6, 9: 8,
                         91: 17, 101: 12, 100: 13, 120: 14, 97: 15, 99: 16, 170: 18, 179: 19, 94: 20, 110: 21,
                         93: 22, 105: 23, 126: 24, 98: 25, 119: 26, 181: 24, 255: -1}.items():
        assert lut[fine] == coarse, fine
    assert (lut[:182] >= 0).all() and sorted(set(lut[:182].tolist())) == list(range(27))


def test_coco_171_and_80_drop_the_unused_thing_ids():
    l171, l80 = coco_lut(171), coco_lut(80)
    for unused in (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90):
        assert l171[unused] == INVALID and l80[unused] == INVALID
    assert [l171[v] for v in (0, 10, 12, 89, 91, 181, 255)] == [0, 10, 11, 79, 80, 170, -1]
    assert [l80[v] for v in (0, 10, 12, 89, 91, 150, 181, 255)] == [1, 11, 12, 80, 0, 0, 0, -1]
    assert l80[182] == INVALID and l171[200] == INVALID


def test_lip_merges_and_groups():
    l16, l5, l19 = lip_lut(16), lip_lut(5), lip_lut(19)
    assert l19[:20].tolist() == list(range(20)) and l19[255] == -1 and l19[20] == INVALID
    # left/right arm, leg, shoe merged; everything below 14 unchanged
    assert [l16[v] for v in (13, 14, 15, 16, 17, 18, 19)] == [13, 14, 14, 15, 15, 16, 16]
    # head: hat 1, hair 2, sunglasses 4, face 13; clothes: upper 5, dress 6, coat 7, jumpsuit 10, scarf 11,
    # skirt 12; arms: glove 3, arms 14 15; legs: pants 9, legs 16 17; feet: socks 8, shoes 18 19
    assert [l5[v] for v in (0, 1, 2, 4, 13)] == [0, 1, 1, 1, 1]
    assert [l5[v] for v in (5, 6, 7, 10, 11, 12)] == [2] * 6
    assert [l5[v] for v in (3, 14, 15, 9, 16, 17, 8, 18, 19)] == [3, 3, 3, 4, 4, 4, 5, 5, 5]


def test_cityscapes_lut_and_input_sizes():
    lut = cityscapes_lut()
    assert [lut[v] for v in (0, 6, 7, 8, 24, 33)] == [-1, -1, 0, 1, 17, 26] and lut[34] == INVALID
    assert input_size("coco", 320) == (320, 320) and input_size("voc", 320) == (320, 320)
    assert input_size("cityscapes", 320) == (320, 640) and input_size("lip", 320) == (640, 320)
    assert input_size("lip", 240) == (480, 240)


def test_recipes_windows_and_clusters():
    assert len(box_anchors(80, 160, RECIPES["cityscapes"]["scales"])) == 306
    assert len(box_anchors(80, 80, RECIPES["coco"]["scales"])) == 142
    assert cluster_sizes("coco", 27) == (12, 15) and cluster_sizes("coco", 171) == (80, 91)
    assert cluster_sizes("lip", 5) == (5, 0) and RECIPES["lip"]["cam_batch"] == 2
    with pytest.raises(ValueError, match="171"):
        cluster_sizes("coco", 80)


# ----------------------------------------------------------------------------- fixture trees
def _img(path, h, w, value=120):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)


def _png(path, lab):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(lab, np.uint8)).save(path)


def write_coco(root, split="val2017", label_value=0):
    """3 images: two with instance annotations (one landscape, one portrait), one without (excluded)."""
    imgs = [{"id": 1, "file_name": "000000000001.jpg", "height": 8, "width": 12},
            {"id": 2, "file_name": "000000000002.jpg", "height": 12, "width": 8},
            {"id": 3, "file_name": "000000000003.jpg", "height": 8, "width": 8}]
    anns = [{"id": 10, "image_id": 2, "category_id": 1, "bbox": [0, 0, 2, 2], "area": 4, "iscrowd": 0,
             "segmentation": [[0, 0, 2, 0, 2, 2]]},
            {"id": 11, "image_id": 1, "category_id": 3, "bbox": [0, 0, 2, 2], "area": 4, "iscrowd": 0,
             "segmentation": [[0, 0, 2, 0, 2, 2]]}]
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(
        {"images": imgs, "annotations": anns, "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}]}))
    for r in imgs:
        _img(root / "images" / split / r["file_name"], r["height"], r["width"])
        lab = np.full((r["height"], r["width"]), 91, np.uint8)  # banner (stuff)
        lab[:2, :2] = label_value
        lab[-1] = 255
        _png(root / "annotations" / split / r["file_name"].replace(".jpg", ".png"), lab)


def test_coco_fixture_loads_annotated_images_only(tmp_path):
    for split in ("train2017", "val2017"):
        write_coco(tmp_path, split)
    assert REGISTRY["transfgu.cocostuff"].fn(tmp_path) == []
    ds = COCOStuff(tmp_path, "val", 27, (16, 16))
    assert ds.ids == ["000000000001", "000000000002"]  # image 3 has no instance: dropped; landscape first
    img, lab = ds[0]
    assert img.shape == (3, 16, 16) and lab.shape == (16, 16)
    assert set(lab.unique().tolist()) == {-1, 9, 17}  # person -> 9, banner -> 17, unlabeled -> -1
    lab80 = COCOStuff(tmp_path, "val", 80, (16, 16))[0][1]
    assert set(lab80.unique().tolist()) == {-1, 0, 1}  # stuff -> background 0, person -> 1
    (tmp_path / "curated_val.txt").write_text("000000000002\n000000000003\n")
    cur = build_dataset("coco", tmp_path, "val", 171, 16, curated=str(tmp_path / "curated_val.txt"))
    assert cur.ids == ["000000000002"]


def test_coco_malformed_input_names_the_file(tmp_path):
    write_coco(tmp_path, "val2017", label_value=11)  # an unused thing id: outside the 171 map
    with pytest.raises(ValueError, match=r"000000000001\.png: label value\(s\) \[11\] outside the class map"):
        COCOStuff(tmp_path, "val", 171, (16, 16))[0]
    assert COCOStuff(tmp_path, "val", 27, (16, 16))[0][1].shape == (16, 16)  # 11 is in the coarse map
    _png(tmp_path / "annotations" / "val2017" / "000000000002.png", np.zeros((5, 5)))  # size mismatch
    with pytest.raises(ValueError, match=r"000000000002\.png: label size 5x5 does not match image"):
        COCOStuff(tmp_path, "val", 27, (16, 16))[1]
    (tmp_path / "annotations" / "val2017" / "000000000001.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"000000000001\.png: missing"):
        COCOStuff(tmp_path, "val", 27, (16, 16))[0]
    problems = REGISTRY["transfgu.cocostuff"].fn(tmp_path)
    assert any("instances_train2017.json" in p for p in problems)
    assert any("000000000001.png: missing" in p for p in problems)
    (tmp_path / "annotations" / "instances_val2017.json").write_text("{not json")
    with pytest.raises(ValueError, match="instances_val2017.json"):
        COCOStuff(tmp_path, "val", 27)


def write_cityscapes(root, split="val", bad=False):
    stem = "frankfurt_000000_000294"
    _img(root / "leftImg8bit" / split / "frankfurt" / f"{stem}_leftImg8bit.png", 4, 8)
    lab = np.array([[0, 6, 7, 8, 24, 33, 33, 33]] * 4, np.uint8)
    if bad:
        lab[0, 0] = 34
    _png(root / "gtFine" / split / "frankfurt" / f"{stem}_gtFine_labelIds.png", lab)


def test_cityscapes_city_folder_loads_and_resizes_nearest(tmp_path):
    write_cityscapes(tmp_path, "train")
    write_cityscapes(tmp_path, "val")
    assert REGISTRY["transfgu.cityscapes"].fn(tmp_path) == []
    ds = Cityscapes(tmp_path, "val", (4, 8))
    assert ds.ids == ["frankfurt_000000_000294"]
    assert ds[0][1][0].tolist() == [-1, -1, 0, 1, 17, 26, 26, 26]
    half = Cityscapes(tmp_path, "val", (2, 4))[0][1]  # nearest: columns 0, 2, 4, 6
    assert half[0].tolist() == [-1, 0, 17, 26]
    write_cityscapes(tmp_path, "val", bad=True)
    with pytest.raises(ValueError, match=r"_gtFine_labelIds\.png: label value\(s\) \[34\]"):
        Cityscapes(tmp_path, "val")[0]


def write_lip(root, split="val", ids=("100034_483681",), missing_label=False):
    (root / f"{split}_id.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / f"{split}_id.txt").write_text("\n".join(ids) + "\n")
    for i in ids:
        _img(root / f"{split}_images" / f"{i}.jpg", 8, 4)
        if not missing_label:
            _png(root / f"{split}_segmentations" / f"{i}.png", np.array([[0, 13, 15, 19]] * 8))


def test_lip_split_loads_each_class_set(tmp_path):
    write_lip(tmp_path, "train")
    write_lip(tmp_path, "val")
    assert REGISTRY["transfgu.lip"].fn(tmp_path) == []
    for classes, row in ((19, [0, 13, 15, 19]), (16, [0, 13, 14, 16]), (5, [0, 1, 3, 5])):
        ds = build_dataset("lip", tmp_path, "val", classes, resize=4)  # (8, 4): LIP is 2R x R
        img, lab = ds[0]
        assert img.shape == (3, 8, 4) and lab[0].tolist() == row


def test_lip_malformed_split_names_the_file(tmp_path):
    write_lip(tmp_path, "val", missing_label=True)
    with pytest.raises(FileNotFoundError, match=r"val_segmentations/100034_483681\.png: missing"):
        LIP(tmp_path, "val", 19)[0]
    problems = REGISTRY["transfgu.lip"].fn(tmp_path)
    assert any("train_id.txt: id list not found" in p for p in problems)
    assert any("100034_483681.png: missing (listed in val_id.txt)" in p for p in problems)
    (tmp_path / "val_id.txt").write_text("a b\n")
    with pytest.raises(ValueError, match=r"val_id\.txt:1: expected one id per line"):
        LIP(tmp_path, "val", 19)
    with pytest.raises(ValueError, match="expected 5, 16 or 19"):
        lip_lut(7)


def test_image_resize_is_bilinear_squash_not_crop(tmp_path):
    write_lip(tmp_path, "val")
    img = np.arange(8 * 4 * 3, dtype=np.uint8).reshape(8, 4, 3)
    Image.fromarray(img).save(tmp_path / "val_images" / "100034_483681.png")
    ds = LIP(tmp_path, "val", 19, (4, 2))
    ds.items[0] = (ds.ids[0], tmp_path / "val_images" / "100034_483681.png", ds.items[0][2])
    x = ds[0][0]
    ref = torch.nn.functional.interpolate(torch.from_numpy(img).permute(2, 0, 1)[None].float(), (4, 2),
                                          mode="bilinear", align_corners=False)[0] / 255
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    assert torch.allclose(x, (ref - mean) / std, atol=1e-6)


def test_engine_trains_on_a_lip_fixture_with_its_own_eval_size(tmp_path):
    from pathlib import Path

    from shared.config import load_config
    from shared.engine import Trainer
    from transfgu.train import TransFGUConfig, build_task

    cfg_path = Path(__file__).resolve().parents[1] / "transfgu" / "configs" / "transfgu_vit-s8_1xb512-100e_lip5.yaml"
    ids = ("a", "b", "c", "d")
    write_lip(tmp_path / "lip", "train", ids)
    write_lip(tmp_path / "lip", "val", ids[:2])
    (tmp_path / "pl").mkdir()
    for i in ids:  # 7 channels stored, the first 5 used (as COCO-80 takes the 80 thing CAMs of 171)
        torch.save(torch.rand(7, 4, 2).half(), tmp_path / "pl" / f"{i}.pt")
    cfg = load_config(cfg_path, TransFGUConfig, [
        f"data.root={tmp_path / 'lip'}", f"data.pseudo_labels={tmp_path / 'pl'}", "data.size=16",
        "data.eval_size=8", "data.cam_channels=5", "model.embed_dim=16", "model.depth=1", "model.num_heads=2",
        "model.dec_layers=1", "model.dec_heads=2", "model.dec_mlp=32", "engine.batch_size=2", "engine.epochs=2",
        "engine.num_workers=0", "fgu.start=1", "fgu.intervals=[1]", "logger.progress=false", "engine.device=cpu"])
    task = build_task(cfg)
    train = task.train_dataset(0)
    assert train[0][0].shape == (3, 32, 16) and train[0][1].shape == (5, 4, 2)  # 2R x R at R = 16
    assert task._dataset("val")[0][0].shape == (3, 16, 8)  # evaluated at eval_size
    Trainer(task, cfg, tmp_path / "run").fit()
    assert task.teacher is not None


def test_generate_writes_one_cam_per_image_for_lip(tmp_path):
    from transfgu import generate
    from transfgu.model import create_encoder

    ids = ("a", "b", "c")
    write_lip(tmp_path / "lip", "train", ids)
    torch.manual_seed(0)
    torch.save(create_encoder().state_dict(), tmp_path / "dino.pth")
    assert generate.main(["--dataset", "lip", "--classes", "5", "--data-root", str(tmp_path / "lip"), "--dino",
                          str(tmp_path / "dino.pth"), "--out", str(tmp_path / "pl"), "--size", "64",
                          "--bank-per-image", "3", "--device", "cpu"]) == 0
    assert torch.load(tmp_path / "pl" / "centroids.pt").shape == (5, 384)
    for i in ids:  # CAMs on the 2R x R = 128 x 64 input: a 16 x 8 token grid
        cam = torch.load(tmp_path / "pl" / f"{i}.pt")
        assert cam.shape == (5, 16, 8) and cam.dtype == torch.float16 and torch.isfinite(cam.float()).all()
