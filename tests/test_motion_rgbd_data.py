"""MotionRGBD loaders: official list format, folder layouts, verify, malformed trees; reproduce smoke test."""
import json

import cv2
import numpy as np
import pytest

from motion_rgbd.data import RGBDVideoDataset, parse_video_list, verify_nvgesture
from shared.data.listfile import ListFileError


def write_nvgesture(root, n_frames=6):
    rels = ["train/class_01/subject3_r0", "train/class_02/subject4_r1"]
    for mod in ("rgb", "depth"):
        for rel in rels:
            d = root / mod / rel
            d.mkdir(parents=True)
            for i in range(n_frames):
                cv2.imwrite(str(d / f"{i:06d}.jpg"), np.full((20, 24, 3), 40 * i, np.uint8))
    (root / "dataset_splits").mkdir()
    for split in ("train", "valid"):
        (root / "dataset_splits" / f"{split}.txt").write_text(
            "".join(f"{rel} {n_frames} {lab}\n" for lab, rel in enumerate(rels)))
    return rels


def test_nvgesture_fixture_loads_and_verifies(tmp_path):
    write_nvgesture(tmp_path)
    assert verify_nvgesture(tmp_path) == []
    ds = RGBDVideoDataset(tmp_path, tmp_path / "dataset_splits/valid.txt", "nvgesture", "rgbd", frames=8, size=16,
                          window=4)
    (xr, xd), (gr, gd), y = ds[1]
    assert xr.shape == xd.shape == (3, 8, 16, 16) and gr.shape == (1, 8, 16, 16) and y == 1
    assert float(xr.min()) >= -1.0 and float(xr.max()) <= 1.0


def test_malformed_list_names_file_and_line(tmp_path):
    p = tmp_path / "train.txt"
    p.write_text("a 10 0\nb ten 1\n")
    with pytest.raises(ListFileError, match=r"train.txt:2: num_frames/label must be integers"):
        parse_video_list(p)
    p.write_text(" RGB_a_1_1 10 3\n")  # PAMI THU-READ lists begin with a space
    assert parse_video_list(p)[0].rel == "RGB_a_1_1"


def test_verify_reports_missing_depth(tmp_path):
    rels = write_nvgesture(tmp_path)
    import shutil
    shutil.rmtree(tmp_path / "depth" / rels[0])
    problems = verify_nvgesture(tmp_path)
    assert problems and "missing folder" in problems[0] and rels[0] in problems[0]


def test_missing_frame_error_names_path(tmp_path):
    rels = write_nvgesture(tmp_path)
    (tmp_path / "rgb" / rels[0] / "000002.jpg").unlink()
    ds = RGBDVideoDataset(tmp_path, tmp_path / "dataset_splits/train.txt", "nvgesture", "rgb", frames=6, size=16,
                          window=2)
    with pytest.raises(FileNotFoundError, match="000002.jpg"):
        ds[0]


def test_reproduce_quick(tmp_path):
    from motion_rgbd import reproduce

    for suite, rows, claims in (("default", ["rgb", "depth", "late_fusion", "capf"],
                                 {"capf>late_fusion", "late_fusion>rgb", "late_fusion>depth"}),
                                ("decoupling", ["rgb", "rgb_coupled3d", "rgb_no_rcm"],
                                 {"rgb>rgb_coupled3d", "rgb>rgb_no_rcm"})):
        out = tmp_path / suite
        assert reproduce.main(["--quick", "--out", str(out), "--seeds", "0,1", "--jobs", "1", "--suite", suite]) == 0
        s = json.loads((out / "summary.json").read_text())
        assert [r["method"] for r in s["rows"]] == rows and set(s["claims"]) == claims
        assert s["seeds"] == [0, 1] and all(len(r["per_seed"]) == 2 for r in s["rows"]) and s["wall_seconds"] > 0
        assert s["tuning_trials"] == reproduce.TUNING_TRIALS[suite] and set(s["tuning_trials"]) == set(rows)
        assert (out / "summary.md").is_file() and (out / "summary.png").is_file()


def test_every_config_loads_and_builds_task():
    from pathlib import Path

    from motion_rgbd.train import MotionConfig, build_task
    from shared.config import load_config

    cfgs = sorted(Path("motion_rgbd/configs").glob("*_*e_*.yaml"))
    assert len(cfgs) >= 9
    for p in cfgs:
        cfg = load_config(p, MotionConfig, [])
        assert cfg.stage == ("fusion" if p.name.startswith("capf") else "unimodal")
        assert cfg.model.frames == 64 and cfg.model.knn == 0.7 and cfg.optim.weight_decay == 0.0003
        assert build_task(cfg).cfg is cfg
        if "nvgesture" in p.name:
            assert cfg.model.temper == 0.4 and cfg.data.window == 4
