"""MotionRGBD NTU RGB+D and THU-READ on fixture trees in the real layouts: verify, loaders, split rules,
malformed input; end to end (train RGB, depth, CAPF for one epoch each, then ``motion_rgbd.evaluate``)."""
import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from motion_rgbd.data import RGBDVideoDataset, ntu_split_problems, verify_ntu, verify_thu_read
from motion_rgbd.depth import EmptyDepthError
from shared.data.listfile import ListFileError

NTU_TRAIN_CS = ["S001C002P001R001A001_rgb", "S001C003P002R002A002_rgb"]  # P1, P2: CS train; C002/C003: CV train
NTU_VALID_CS = ["S001C001P003R001A001_rgb", "S001C001P006R001A002_rgb"]  # P3, P6: CS valid; C001: CV valid


def _jpgs(folder, n, first, shape=(30, 40, 3)):
    folder.mkdir(parents=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i + first:06d}.jpg"), np.full(shape, 25 * i, np.uint8))


def write_ntu(root, n=6):
    """Real NTU layout: Images/<name>/%06d.jpg and nturgb+d_depth_masked/<name-_rgb>/MDepth-%08d.png, both
    1-indexed; raw 16-bit masked depth (mm, 0 = background); list lines '<name> <n> <label> ' (trailing space)."""
    for k, name in enumerate(NTU_TRAIN_CS + NTU_VALID_CS):
        _jpgs(root / "Images" / name, n, 1)
        d = root / "nturgb+d_depth_masked" / name[:-4]
        d.mkdir(parents=True)
        for i in range(n):
            dep = np.zeros((48, 64), np.uint16)
            dep[8:38, 10 + i:40 + i] = 2000 + 7 * k  # a 30x30 person that moves right
            cv2.imwrite(str(d / f"MDepth-{i + 1:08d}.png"), dep)
    line = lambda nm: f"{nm} {n} {int(nm[17:20]) - 1} \n"  # noqa: E731 - label = action - 1
    for proto, train, valid in (("@CS", NTU_TRAIN_CS, NTU_VALID_CS), ("@CV", NTU_TRAIN_CS, NTU_VALID_CS)):
        (root / "dataset_splits" / proto).mkdir(parents=True)
        (root / "dataset_splits" / proto / "train.txt").write_text("".join(map(line, train)))
        (root / "dataset_splits" / proto / "valid.txt").write_text("".join(map(line, valid)))


def write_thu_read(root, n=6, split="@CS1"):
    """Real THU-READ layout: <root>/RGB_<action>_<subj>_<rep>/%06d.jpg, depth D_...; PAMI list lines begin
    with a space (' RGB_clap_hand_cgy_3 208 24')."""
    train = [("RGB_clap_hand_cwx_1", 24), ("RGB_zip_up_cwx_2", 0)]
    valid = [("RGB_clap_hand_cgy_3", 24), ("RGB_zip_up_cgy_1", 0)]
    for rel, _ in train + valid:
        _jpgs(root / rel, n, 0)
        _jpgs(root / rel.replace("RGB_", "D_"), n, 0)
    (root / "dataset_splits" / split).mkdir(parents=True)
    for name, rows in (("train", train), ("valid", valid)):
        (root / "dataset_splits" / split / f"{name}.txt").write_text("".join(f" {r} {n} {lab}\n" for r, lab in rows))


def test_ntu_fixture_verifies_and_loads_raw_depth(tmp_path):
    write_ntu(tmp_path)
    assert verify_ntu(tmp_path) == []
    lst = tmp_path / "dataset_splits/@CS/valid.txt"
    ds = RGBDVideoDataset(tmp_path, lst, "ntu", "rgbd", frames=4, size=16, window=2, resize=(320, 240), crop=224)
    (xr, xd), (gr, gd), y = ds[1]
    assert xr.shape == xd.shape == (3, 4, 16, 16) and gd.shape == (1, 4, 16, 16) and y == 1
    assert ds.frame_path("S001C001P003R001A001_rgb", True, 0).name == "MDepth-00000001.png"
    # JET of the wrapped depth: background 0 -> dark blue (BGR fed as RGB: red channel high) -- not grey
    assert float((xd[0] - xd[2]).abs().max()) > 0.5


def test_ntu_split_rules_and_names(tmp_path):
    write_ntu(tmp_path)
    cs_valid = tmp_path / "dataset_splits/@CS/valid.txt"
    assert ntu_split_problems(cs_valid, "@CS", "valid") == []
    wrong = ntu_split_problems(cs_valid, "@CS", "train")
    assert len(wrong) == 2 and "valid.txt:1: subject P003 belongs to the @CS valid split, not train" in wrong[0]
    cv_train = tmp_path / "dataset_splits/@CV/train.txt"
    cv_train.write_text("S001C001P001R001A001_rgb 6 0 \nS001C002P001R001A003_rgb 6 5 \nbad_name 6 0\n")
    probs = ntu_split_problems(cv_train, "@CV", "train")
    assert "train.txt:1: camera C001 belongs to the @CV valid split" in probs[0]
    assert "train.txt:2: label 5 but action A003" in probs[1]
    assert "train.txt:3: 'bad_name' is not an NTU name" in probs[2]
    assert any("train.txt:1: camera C001" in p for p in verify_ntu(tmp_path))


def test_ntu_malformed_and_missing(tmp_path):
    write_ntu(tmp_path)
    lst = tmp_path / "dataset_splits/@CS/train.txt"
    (tmp_path / "nturgb+d_depth_masked" / NTU_TRAIN_CS[0][:-4] / "MDepth-00000006.png").unlink()
    assert any("missing frame" in p and "MDepth-00000006.png" in p for p in verify_ntu(tmp_path))
    lst.write_text("S001C002P001R001A001_rgb six 0 \n")
    with pytest.raises(ListFileError, match=r"train.txt:1: num_frames/label must be integers"):
        RGBDVideoDataset(tmp_path, lst, "ntu")
    # an all-background depth frame: the official code crashes; ours names the frame
    lst.write_text(f"{NTU_TRAIN_CS[1]} 6 1 \n")
    cv2.imwrite(str(tmp_path / "nturgb+d_depth_masked" / NTU_TRAIN_CS[1][:-4] / "MDepth-00000001.png"),
                np.zeros((48, 64), np.uint16))
    ds = RGBDVideoDataset(tmp_path, lst, "ntu", "depth", frames=4, size=16, window=2)
    with pytest.raises(EmptyDepthError, match="MDepth-00000001.png: raw depth frame has no contour"):
        ds[0]


def test_drop_short_videos(tmp_path):
    write_thu_read(tmp_path)
    lst = tmp_path / "dataset_splits/@CS1/train.txt"
    assert len(RGBDVideoDataset(tmp_path, lst, "thu_read", drop_short=5)) == 2
    with pytest.raises(ListFileError, match="train.txt: no video with more than 16 frames"):
        RGBDVideoDataset(tmp_path, lst, "thu_read", drop_short=16)


def test_thu_read_verify_and_malformed(tmp_path):
    write_thu_read(tmp_path)
    assert verify_thu_read(tmp_path) == []
    shutil.rmtree(tmp_path / "D_zip_up_cgy_1")
    probs = verify_thu_read(tmp_path)
    assert len(probs) == 1 and "valid.txt: RGB_zip_up_cgy_1: missing folder" in probs[0]
    assert "D_zip_up_cgy_1" in probs[0]
    (tmp_path / "dataset_splits/@CS1/train.txt").write_text(" RGB_clap_hand_cwx_1 6\n")
    assert any("train.txt:1: expected '<rel_dir> <num_frames> <label>'" in p for p in verify_thu_read(tmp_path))


TINY = ["model.frames=8", "model.width_div=16", "model.dim=16", "model.samples=[2,4,6]", "model.depth=1",
        "model.heads=2", "model.dim_head=8", "model.mlp_dim=16", "model.rcm_hidden=8", "model.bn_momentum=0.1",
        "data.size=32", "data.window=2", "data.drop_short=0", "data.eval_batch_size=4", "engine.epochs=1",
        "engine.batch_size=2", "engine.num_workers=0", "engine.device=cpu", "logger.progress=false"]


def run_end_to_end(tmp_path, root, stem, fusion, extra=()):
    """Train RGB, depth and CAPF one epoch each through the CLI, then evaluate every checkpoint."""
    from motion_rgbd import evaluate, train

    over = [f"data.root={root}", *TINY, *extra]
    cfgs = {m: f"motion_rgbd/configs/{stem}-{m}.yaml" for m in ("rgb", "depth")}
    for m, cfg in cfgs.items():
        train.main(["--config", cfg, "--run-dir", str(tmp_path / m), *over])
        res = evaluate.main(["--config", cfg, "--checkpoint", str(tmp_path / m / "best.pt"),
                             "--out", str(tmp_path / f"{m}.json"), *over])
        assert res["videos"] == 2 and 0 <= res[f"{m}_top1"] <= res[f"{m}_top5"] <= 100
        assert json.loads((tmp_path / f"{m}.json").read_text())[f"{m}_top5"] == res[f"{m}_top5"]
    fcfg = f"motion_rgbd/configs/{fusion}.yaml"
    train.main(["--config", fcfg, "--run-dir", str(tmp_path / "capf"), *over,
                f"model.rgb_checkpoint={tmp_path / 'rgb' / 'best.pt'}",
                f"model.depth_checkpoint={tmp_path / 'depth' / 'best.pt'}"])
    res = evaluate.main(["--config", fcfg, "--checkpoint", str(tmp_path / "capf" / "best.pt"), *over])
    assert {"fused_top1", "fused_top5", "posterior_top1", "rgb_top1", "depth_top5"} <= set(res)
    return res


def test_thu_read_end_to_end(tmp_path):
    write_thu_read(tmp_path / "data", n=10)
    run_end_to_end(tmp_path, tmp_path / "data", "motionrgbd_i3d-dsn_8xb6-100e_thu-read",
                   "capf_i3d-dsn_8xb6-100e_thu-read", ["model.init_checkpoint="])


def test_ntu_end_to_end(tmp_path):
    write_ntu(tmp_path / "data", n=10)
    run_end_to_end(tmp_path, tmp_path / "data", "motionrgbd_i3d-dsn_8xb4-100e_ntu-cs",
                   "capf_i3d-dsn_8xb4-100e_ntu-cs")


def test_evaluate_one_line_errors(tmp_path, capsys):
    from motion_rgbd import evaluate
    from motion_rgbd.model import MotionNet
    from motion_rgbd.train import MotionConfig, net_kwargs
    from shared.config import load_config

    write_thu_read(tmp_path / "data", n=10)
    cfg = "motion_rgbd/configs/motionrgbd_i3d-dsn_8xb6-100e_thu-read-rgb.yaml"
    over = [f"data.root={tmp_path / 'data'}", *TINY]
    bad = tmp_path / "bad.pth.tar"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit):
        evaluate.main(["--config", cfg, "--checkpoint", str(bad), *over])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.pth.tar: not a readable torch checkpoint" in err[0]
    # a random checkpoint in the official layout ({'model': ...}, 'module.' prefix) loads and evaluates
    c = load_config(cfg, MotionConfig, over)
    state = {"module." + k: v for k, v in MotionNet(40, **net_kwargs(c.model, 1)).state_dict().items()}
    torch.save({"model": state, "epoch": 3, "bestacc": 0.0}, tmp_path / "model_best.pth.tar")
    res = evaluate.main(["--config", cfg, "--checkpoint", str(tmp_path / "model_best.pth.tar"), *over])
    assert res["videos"] == 2 and set(res) >= {"rgb_top1", "rgb_top5"}
    torch.save({"model": {k: v for k, v in state.items() if "mlp_head" not in k}}, tmp_path / "nohead.pth.tar")
    with pytest.raises(SystemExit):
        evaluate.main(["--config", cfg, "--checkpoint", str(tmp_path / "nohead.pth.tar"), *over])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nohead.pth.tar: checkpoint does not match the model" in err[0]
