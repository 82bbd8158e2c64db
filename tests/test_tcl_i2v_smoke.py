"""Smoke: every config loads; the engine runs a stage-1 teacher then a TCL + ML student; reproduce --quick."""
import json
from pathlib import Path

import pytest
import torch

from shared.config import load_config
from tcl_i2v import reproduce
from tcl_i2v.train import KDTask, TCLConfig, main

CONFIGS = sorted((Path(__file__).parents[1] / "tcl_i2v" / "configs").glob("*.yaml"))
TINY = ["engine.epochs=1", "engine.batch_size=16", "data.train_ids=8", "data.test_ids=6",
        "model.tiny_widths=[8,8,8,8]", "engine.eval_every=1"]
CFG = "tcl_i2v/configs/tcl-ml_tiny_1xb32-30e_synvideo.yaml"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_configs_load_with_the_recipe_their_name_says(path):
    cfg = load_config(path, TCLConfig)
    method = path.stem.split("_")[0]
    assert cfg.kd.method == {"tcl-ml": "tcl"}.get(method, method)
    assert (cfg.kd.ml == "A") == method.startswith("tcl-ml")
    assert f"{cfg.engine.epochs}e" in path.stem and f"xb{cfg.engine.batch_size}" in path.stem


def test_engine_teacher_then_mutual_student(tmp_path):
    torch.set_num_threads(1)
    t_dir, s_dir = tmp_path / "v2v", tmp_path / "tcl"
    main(["--config", CFG, "--run-dir", str(t_dir), "kd.method=v2v", *TINY])
    main(["--config", CFG, "--run-dir", str(s_dir), f"kd.teacher_ckpt={t_dir / 'last.pt'}",
          "kd.student_init=vkd", *TINY])
    rows = [json.loads(x) for x in (s_dir / "metrics.jsonl").read_text().splitlines()]
    keys = set().union(*rows)
    assert any("i2v/mAP" in k for k in keys) and any("tcl" in k for k in keys) and any("ml_t" in k for k in keys)
    # the stage-1 teacher was loaded: with ml=A it trained on, so it differs from stage 1 but started there
    cfg = load_config(CFG, TCLConfig, [f"kd.teacher_ckpt={t_dir / 'last.pt'}", *TINY])
    net = KDTask(cfg).build_model()
    t_sd = torch.load(t_dir / "last.pt", weights_only=True)["model"]
    assert torch.equal(net.teacher.state_dict()["backbone.body.0.weight"], t_sd["teacher.backbone.body.0.weight"])


def test_reproduce_quick(tmp_path):
    assert reproduce.main(["--quick", "--out", str(tmp_path), "--seeds", "0", "--jobs", "1"]) == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    names = [r["method"] for r in s["rows"]]
    assert names == ["teacher_v2v", "teacher_i2v", "image_only", "vkd", "tkp", "tcl", "tcl_ml"]
    assert set(s["claims"]) == {"tcl > vkd", "tcl > tkp", "tcl_ml > tcl", "tcl_ml > image_only"}
    assert s["data_seeds"] == [0] and (tmp_path / "summary.png").is_file()
    assert s["tuning_trials"] == {r: reproduce.TUNING_TRIALS[r] for r in names[2:]}
    assert s["seeds"] == [0] and len(s["rows"][0]["per_seed"]) == 1 and s["wall_seconds"] > 0


def test_reproduce_quick_misalignment_suite(tmp_path):
    assert reproduce.main(["--quick", "--out", str(tmp_path), "--seeds", "0", "--jobs", "1",
                           "--suite", "misalignment"]) == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    rows = {r["method"]: r["mean"] for r in s["rows"]}
    assert rows["tcl_teacher_x10"] == rows["tcl"]  # normalised TCL cannot see the teacher's scale
    assert "drop(vkd) > drop(tcl)" in s["claims"]
