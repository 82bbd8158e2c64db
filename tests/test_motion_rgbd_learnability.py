"""motion_rgbd.learnability: validation seeds only; a smoke run gives per-class train / test accuracy."""
import json

import pytest

from motion_rgbd.learnability import main


def test_reported_seeds_are_refused(tmp_path):
    with pytest.raises(SystemExit):
        main(["--seeds", "2,100", "--out", str(tmp_path / "x.json"), "--run-root", str(tmp_path)])


def test_smoke_run_writes_per_class_accuracy(tmp_path):
    tiny = "decoupling.n_train=2;decoupling.n_test=1;decoupling.train.epochs=1"
    out = tmp_path / "l.json"
    assert main(["--variant", f"a={tiny}", "--variant", f"b={tiny};decoupling.data.r_lo=[2,3];"
                 "decoupling.data.r_change=[7,8];decoupling.data.bg_texture=0.05", "--seeds", "100", "--jobs", "1",
                 "--out", str(out), "--run-root", str(tmp_path)]) == 0
    res = json.loads(out.read_text())
    assert set(res) == {"a", "b"} and res["b"]["overrides"][-1] == "decoupling.data.bg_texture=0.05"
    for r in res.values():
        s = r["seeds"]["100"]
        assert len(s["train"]) == 6 and len(s["test"]) == 6 and all(0 <= v <= 100 for v in s["test"])
