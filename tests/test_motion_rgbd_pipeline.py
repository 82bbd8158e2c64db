"""MotionRGBD test geometry by hand, the launch scripts' convention, and NvGesture / IsoGD end to end
(one unimodal net through train.main, then motion_rgbd.evaluate) on fixture trees in the real layouts."""
import os
import subprocess

import cv2
import numpy as np

from motion_rgbd.data import eval_geometry

TINY = ["model.frames=8", "model.width_div=16", "model.dim=16", "model.samples=[2,4,6]", "model.depth=1",
        "model.heads=2", "model.dim_head=8", "model.mlp_dim=16", "model.rcm_hidden=8", "model.bn_momentum=0.1",
        "data.size=32", "data.window=2", "data.drop_short=0", "data.eval_batch_size=4", "engine.epochs=1",
        "engine.batch_size=2", "engine.num_workers=0", "engine.device=cpu", "logger.progress=false"]


def test_eval_geometry_offsets_by_hand():
    # a 256x256 frame whose pixel value encodes its column: the crop's first column says where it starts
    im = np.tile(np.arange(256, dtype=np.uint8)[None, :, None], (256, 1, 3))
    centre = eval_geometry(im, 224, (256, 256), 224)  # (256 - 224) // 2 = 16
    assert centre.shape == (224, 224, 3) and centre[0, 0, 0] == 16 and centre[0, -1, 0] == 239
    nv = eval_geometry(im, 224, (256, 256), 224, (32, 32))  # NvGesture's test crop at (32, 32)
    assert nv[0, 0, 0] == 32 and nv[0, -1, 0] == 255
    thu = eval_geometry(np.zeros((240, 320, 3), np.uint8), 224, (320, 240), 200)  # THU: crop 200 -> 224
    assert thu.shape == (224, 224, 3)
    assert eval_geometry(im, 16).shape == (16, 16, 3)  # no resize: straight to size


def _script(name, env, *args):
    e = {k: v for k, v in os.environ.items() if k not in ("DATA_ROOT", "OUT", "WEIGHTS")} | env
    return subprocess.run(["bash", f"motion_rgbd/scripts/{name}", *args], env=e, capture_output=True, text=True,
                          timeout=60)


def test_scripts_help_and_required_variables():
    for name in ("nvgesture.sh", "isogd.sh", "thu_read.sh", "ntu.sh"):
        h = _script(name, {}, "--help")
        assert h.returncode == 0 and "DATA_ROOT" in h.stdout and "GPUS" in h.stdout and "WEIGHTS" in h.stdout
        r = _script(name, {})
        assert r.returncode == 2 and r.stderr.strip() == (f"{name}: error: set DATA_ROOT=<the dataset root> "
                                                          f"(see: bash motion_rgbd/scripts/{name} --help)")
    r = _script("ntu.sh", {"DATA_ROOT": "/nonexistent", "NTU_PROTOCOLS": "xs", "PYTHON": "false"})
    assert r.returncode == 2 and "ntu.sh: error: NTU_PROTOCOLS has 'xs'" in r.stderr
    r = _script("thu_read.sh", {"DATA_ROOT": "/nonexistent", "THU_SPLITS": "5", "PYTHON": "false"})
    assert r.returncode == 2 and "THU_SPLITS has '5'" in r.stderr


def _frames(folder, n, shape=(24, 32, 3)):
    folder.mkdir(parents=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:06d}.jpg"), np.full(shape, 20 * i, np.uint8))


def _train_and_evaluate(tmp_path, root, cfg, modality, extra=()):
    from motion_rgbd import evaluate, train

    over = [f"data.root={root}", *TINY, *extra]
    train.main(["--config", cfg, "--run-dir", str(tmp_path / "run"), *over])
    res = evaluate.main(["--config", cfg, "--checkpoint", str(tmp_path / "run" / "best.pt"),
                         "--out", str(tmp_path / "eval.json"), *over])
    assert res["videos"] == 2 and 0 <= res[f"{modality}_top1"] <= res[f"{modality}_top5"] <= 100
    assert (tmp_path / "eval.json").is_file()


def test_nvgesture_end_to_end(tmp_path):
    root, rels = tmp_path / "data", ["train/class_01/subject3_r0", "train/class_02/subject4_r1"]
    for mod in ("rgb", "depth"):
        for rel in rels:
            _frames(root / mod / rel, 10)
    (root / "dataset_splits").mkdir()
    for split in ("train", "valid"):
        (root / "dataset_splits" / f"{split}.txt").write_text("".join(f"{r} 10 {k}\n" for k, r in enumerate(rels)))
    _train_and_evaluate(tmp_path, root, "motion_rgbd/configs/motionrgbd_i3d-dsn_8xb4-100e_nvgesture-depth.yaml",
                        "depth")


def write_isogd(root):
    rels = ["train/001/M_00001", "train/001/M_00002"]
    for rel in rels:
        _frames(root / rel, 10)
        _frames(root / rel.replace("M_", "K_"), 10)
    (root / "dataset_splits").mkdir()
    for split in ("train", "valid"):
        (root / "dataset_splits" / f"{split}.txt").write_text("".join(f"{r} 10 {k}\n" for k, r in enumerate(rels)))


ISOGD = "motion_rgbd/configs/motionrgbd_i3d-dsn_8xb6-300e_isogd-rgb.yaml"


def test_isogd_end_to_end(tmp_path):
    write_isogd(tmp_path / "data")
    _train_and_evaluate(tmp_path, tmp_path / "data", ISOGD, "rgb", ["sched.name=cosine"])


def test_isogd_plateau_config_starts(tmp_path):
    from motion_rgbd import train

    write_isogd(tmp_path / "data")
    train.main(["--config", ISOGD, "--run-dir", str(tmp_path / "run"), f"data.root={tmp_path / 'data'}", *TINY])
